"""Bind the job id of a request to its log lines, so every line about a job carries `job_id`."""

from __future__ import annotations

import contextvars

from flask import Flask, g, request

from shared.logs import bind_job_token, unbind_job_token


def _bind() -> None:
    job_id = (request.view_args or {}).get("job_id")
    if isinstance(job_id, str):
        g.log_job_token = bind_job_token(job_id)


def _unbind(_: BaseException | None) -> None:
    token: contextvars.Token[str | None] | None = g.pop("log_job_token", None)
    if token is not None:
        unbind_job_token(token)


def init_app(app: Flask) -> None:
    """Tag the log lines of every `/.../<job_id>/...` request with that job id."""
    app.before_request(_bind)
    app.teardown_request(_unbind)
