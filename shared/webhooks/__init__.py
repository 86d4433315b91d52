"""Webhooks: event names, signing, the SSRF guard, delivery records; for the API and the workers."""
