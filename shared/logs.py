"""Structured logs: one JSON object per line, with the job id on every line about a job."""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["json", "text", "console"]

# The job the current thread (or asyncio task) is working on; set with bind_job().
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("lstmgen_job_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is worth logging.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "job_id", "taskName"}
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(job_id)s] %(message)s"
# Requests that health checks and `make run` repeat every few seconds: not worth a line each.
POLL_PATHS = ("/readyz", "/healthz")
# Lines saying a process is up and serving (see announce()).
UP_LOGGER = "lstmgen.up"
# In the console format only these loggers speak below WARNING: processes up, jobs started
# and ended.
CONSOLE_LOGGERS = (UP_LOGGER, "lstmgen.run", "shared.jobs.lifecycle")


@contextmanager
def bind_job(job_id: str) -> Iterator[None]:
    """Tag every log line emitted inside the block (same thread) with `job_id`."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def bind_job_token(job_id: str) -> contextvars.Token[str | None]:
    """Tag log lines with `job_id` until `unbind_job_token` (for hooks that cannot use `with`)."""
    return _job_id.set(job_id)


def unbind_job_token(token: contextvars.Token[str | None]) -> None:
    """Undo a `bind_job_token`."""
    _job_id.reset(token)


def announce(message: str, *args: object) -> None:
    """Log that a process is up and serving (shown in every format, the console one included)."""
    logging.getLogger(UP_LOGGER).info(message, *args)


def current_job_id() -> str | None:
    """Return the job id bound to the current context, if any."""
    return _job_id.get()


class JobIdFilter(logging.Filter):
    """Give every record a `job_id` attribute: the one passed in `extra`, else the bound one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add `job_id` to the record and keep it."""
        if getattr(record, "job_id", None) is None:
            record.job_id = _job_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON: time, level, logger, message, job_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON object on one line."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None) or _job_id.get()
        if job_id is not None:
            entry["job_id"] = job_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Format a record for people reading a terminal, job id in brackets."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of text."""
        if getattr(record, "job_id", None) is None:
            record.job_id = _job_id.get() or "-"
        return super().format(record)


class ConsoleFormatter(logging.Formatter):
    """Format a record as a short line for the terminal of `make run`: time, job, message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one short line, the job id's first 8 characters first."""
        line = super().format(record)
        job_id = getattr(record, "job_id", None) or _job_id.get()
        if job_id:
            line = line.replace(" ", f" {job_id[:8]} ", 1)
        if record.levelno >= logging.WARNING:
            line += f" ({record.levelname.lower()}, {record.name})"
        return line


class PollFilter(logging.Filter):
    """Drop the access-log lines of health and readiness polls."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every line but a poll's."""
        message = record.getMessage()
        return not any(f'"GET {path} ' in message for path in POLL_PATHS)


FORMATTERS: dict[LogFormat, str] = {
    "json": "shared.logs.JsonFormatter",
    "text": "shared.logs.TextFormatter",
    "console": "shared.logs.ConsoleFormatter",
}


def logging_config(log_format: LogFormat = "json", level: str = "INFO") -> dict[str, Any]:
    """Return a `logging.config.dictConfig` mapping (also fit for gunicorn's `logconfig_dict`).

    `console` is for a person watching `make run`: warnings, plus one line per job start and
    end; `json` (production) and `text` keep every line at `level`.
    """
    quiet = log_format == "console"
    others = "WARNING" if quiet else level
    loggers = {
        # Gunicorn and Celery attach their own handlers; route them through ours instead.
        name: {"level": others, "handlers": [], "propagate": True}
        for name in ("gunicorn.error", "gunicorn.access", "celery", "celery.task")
    }
    loggers.update({name: {"level": level} for name in CONSOLE_LOGGERS})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "job_id": {"()": "shared.logs.JobIdFilter"},
            "polls": {"()": "shared.logs.PollFilter"},
        },
        "formatters": {"default": {"()": FORMATTERS[log_format]}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["job_id", "polls"],
            }
        },
        "root": {"level": others, "handlers": ["stderr"]},
        "loggers": loggers,
    }


def setup_logging(log_format: LogFormat = "json", level: str = "INFO") -> None:
    """Configure the process's logging: one stderr handler in the chosen format."""
    logging.config.dictConfig(logging_config(log_format, level))
    logging.captureWarnings(True)


# Keyed by thread too: a redelivered message can run in a second thread under the same task id.
_task_tokens: dict[tuple[str, int], contextvars.Token[str | None]] = {}


def bind_task_job(task_id: str, task: Any, args: Any = ()) -> None:
    """Bind the job id (first argument of every lstmgen task) while a task runs.

    A Celery worker calls this and `unbind_task_job` from its task signals, so that Celery's
    own lines about a task carry the job id too.
    """
    name = getattr(task, "name", "") or ""
    if name.startswith("lstmgen.") and args and isinstance(args[0], str):
        _task_tokens[(task_id, threading.get_ident())] = _job_id.set(args[0])


def unbind_task_job(task_id: str) -> None:
    """Undo bind_task_job once the task has ended."""
    token = _task_tokens.pop((task_id, threading.get_ident()), None)
    if token is not None:
        _job_id.reset(token)
