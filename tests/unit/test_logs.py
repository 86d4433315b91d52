"""JSON logs carry the job id on every line about a job."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from flask import Flask

from api import request_logs
from shared.logs import (
    CONSOLE_LOGGERS,
    ConsoleFormatter,
    JobIdFilter,
    JsonFormatter,
    PollFilter,
    TextFormatter,
    bind_job,
    logging_config,
)


def _capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(JobIdFilter())
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_bound_job_id_and_extras() -> None:
    logger, stream = _capture(JsonFormatter())
    logger.info("before")
    with bind_job("job-1"):
        logger.info("working on %s", "it", extra={"model": "default"})
    logger.info("explicit", extra={"job_id": "job-2"})
    before, inside, explicit = _lines(stream)
    assert "job_id" not in before
    assert inside["job_id"] == "job-1"
    assert inside["message"] == "working on it"
    assert inside["model"] == "default"
    assert inside["level"] == "info"
    assert explicit["job_id"] == "job-2"


def test_binding_is_per_thread() -> None:
    logger, stream = _capture(JsonFormatter())
    with bind_job("main-job"):
        thread = threading.Thread(target=lambda: logger.info("other thread"))
        thread.start()
        thread.join()
        logger.info("main thread")
    other, main = _lines(stream)
    assert "job_id" not in other
    assert main["job_id"] == "main-job"


def test_exceptions_are_one_json_line() -> None:
    logger, stream = _capture(JsonFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (line,) = _lines(stream)
    assert "ValueError: boom" in str(line["exc"])


def test_text_format_shows_the_job_id() -> None:
    logger, stream = _capture(TextFormatter())
    with bind_job("abc"):
        logger.warning("hello")
    assert "[abc] hello" in stream.getvalue()


def test_setup_logging_makes_every_logger_write_json(tmp_path: Path) -> None:
    script = (
        "import logging\n"
        "from shared.logs import bind_job, setup_logging\n"
        "setup_logging('json')\n"
        "with bind_job('j-9'):\n"
        "    logging.getLogger('celery.worker').info('from celery')\n"
        "logging.getLogger('gunicorn.error').warning('from gunicorn')\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    celery, gunicorn = (json.loads(line) for line in result.stderr.splitlines())
    assert celery == {
        **celery,
        "logger": "celery.worker",
        "job_id": "j-9",
        "message": "from celery",
    }
    assert gunicorn["level"] == "warning" and "job_id" not in gunicorn


def test_api_requests_about_a_job_carry_its_id() -> None:
    app = Flask(__name__)
    request_logs.init_app(app)
    logger, stream = _capture(JsonFormatter())

    @app.get("/v1/jobs/<job_id>")
    def show(job_id: str) -> str:
        logger.info("showing")
        return job_id

    @app.get("/other")
    def other() -> str:
        logger.info("no job here")
        return "ok"

    with app.test_client() as client:
        assert client.get("/v1/jobs/abc123").status_code == 200
        assert client.get("/other").status_code == 200
    about_job, unrelated = _lines(stream)
    assert about_job["job_id"] == "abc123"
    assert "job_id" not in unrelated


def access_record(request_line: str) -> logging.LogRecord:
    """Return a gunicorn access-log record for one request line."""
    return logging.LogRecord(
        "gunicorn.access", logging.INFO, "", 0, '127.0.0.1 - - "%s" 200 2', (request_line,), None
    )


def test_health_and_readiness_polls_are_not_logged() -> None:
    polls = PollFilter()
    assert not polls.filter(access_record("GET /readyz HTTP/1.1"))
    assert not polls.filter(access_record("GET /healthz HTTP/1.1"))
    assert polls.filter(access_record("GET /v1/jobs/readyz HTTP/1.1"))
    assert polls.filter(access_record("POST /v1/jobs HTTP/1.1"))


def test_the_console_format_is_one_short_line_with_the_job() -> None:
    record = logging.LogRecord(
        "shared.jobs.lifecycle", logging.INFO, "", 0, "job started", (), None
    )
    record.job_id = "0123456789abcdef"
    line = ConsoleFormatter().format(record)
    assert line.endswith(" 01234567 job started") and len(line.split()) == 4
    warning = logging.LogRecord("api.app", logging.WARNING, "", 0, "careful", (), None)
    assert ConsoleFormatter().format(warning).endswith(" careful (warning, api.app)")


def test_the_console_config_keeps_job_and_up_lines_and_quiets_the_rest() -> None:
    config = logging_config("console")
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["gunicorn.access"]["level"] == "WARNING"
    for name in CONSOLE_LOGGERS:
        assert config["loggers"][name]["level"] == "INFO"
    assert logging_config("json")["root"]["level"] == "INFO"
