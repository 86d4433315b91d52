"""Code shared by the API, the workers and the `lstmgen` command.

The top level holds what every process uses (settings, logs, metrics, the Celery app); each
concept is a sub-package: `engine`, `jobs`, `webhooks` and `client`.
"""
