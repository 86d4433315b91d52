"""The Celery workers: generation (a batch loop per model) and webhook delivery (`--webhooks`)."""
