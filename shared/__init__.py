"""Code shared by the API, the workers and the `lstmgen` command.

Top level: what every process uses (settings, logs, metrics, the Celery app). Each concept has
its sub-package: `engine` (models and generation), `jobs` (the job store), `webhooks` (signing,
the SSRF guard, delivery records) and `client` (the HTTP client and the `lstmgen` command).
"""
