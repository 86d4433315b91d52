"""Webhooks: event names, signing, the SSRF guard and delivery records.

Used by the API (URL checks, delivery listings) and the workers (events, deliveries).
"""
