"""Gunicorn configuration, from the same settings as everything else."""

from __future__ import annotations

from typing import Any

from shared.logs import announce, logging_config
from shared.settings import get_settings

_settings = get_settings()

bind = [f"{_settings.host}:{_settings.port}"]
# Threads, not processes, carry concurrency: each SSE stream and `Prefer: wait` holds a thread
# that mostly waits on Redis.
worker_class = "gthread"
workers = _settings.api_processes
threads = _settings.api_threads
timeout = 60  # heartbeat of a worker process; requests may last longer with gthread
graceful_timeout = 10
keepalive = 5
accesslog = "-"
logconfig_dict = logging_config(_settings.log_format)
# The compatibility route carries the seed in the query string (up to max_seed_chars), so the
# request line is not capped here; bodies are capped by the app (max_body_bytes).
limit_request_line = 0


def when_ready(server: Any) -> None:
    """Say the API is listening (gunicorn calls this once its sockets are bound)."""
    announce("api up at %s (%d processes)", _settings.base_url, _settings.api_processes)
