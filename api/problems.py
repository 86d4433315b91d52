"""RFC 9457 problem details: the one shape of every error the API returns."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import kombu.exceptions
import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://lstmgen.dev/problems/"
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request and what is wrong with it."""

    field: str
    message: str


@dataclass
class Problem(Exception):
    """An error answered as problem+json; `kind` names it in the `type` URI."""

    status: int
    title: str
    detail: str
    kind: str = "about:blank"
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """Return the problem document."""
        document: dict[str, Any] = {
            "type": self.kind if self.kind == "about:blank" else PROBLEM_TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            document["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        document.update(self.extra)
        return document


def invalid(errors: list[FieldError], **extra: Any) -> Problem:
    """Return the 422 problem for request fields that break the rules."""
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return Problem(422, "Invalid request", detail, "invalid-request", errors, extra=extra)


def not_found(what: str) -> Problem:
    """Return the 404 problem for something that does not exist (or is not yours)."""
    return Problem(404, "Not found", f"{what} does not exist", "not-found")


def problem_response(problem: Problem) -> Response:
    """Render a problem as an HTTP response."""
    response = jsonify(problem.body())
    response.status_code = problem.status
    response.content_type = PROBLEM_JSON
    response.headers.update(problem.headers)
    return response


def _http_error(error: HTTPException, max_body_bytes: int) -> Response:
    code = error.code or 500
    detail = error.description or error.name
    kind = "about:blank"
    errors = []
    if code == 413:
        kind = "body-too-large"
        detail = f"the request body is larger than the {max_body_bytes}-byte limit"
        errors = [FieldError("body", f"must be at most {max_body_bytes} bytes")]
    problem = Problem(code, error.name, detail, kind, errors)
    allowed = getattr(error, "valid_methods", None)
    if code == 405 and allowed:
        problem.headers["Allow"] = ", ".join(allowed)
    return problem_response(problem)


def _redis_down(error: Exception) -> Response:
    log.error("redis unreachable: %s", error)
    detail = "the job store (Redis) is unreachable; retry shortly"
    problem = Problem(503, "Service unavailable", detail, "store-unavailable")
    problem.headers["Retry-After"] = "5"
    return problem_response(problem)


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error: %s", error)
    problem = Problem(500, "Internal server error", "an unexpected error occurred", "internal")
    return problem_response(problem)


def register_problem_handlers(app: Flask, max_body_bytes: int) -> None:
    """Answer every error, including framework ones, as problem+json."""
    app.register_error_handler(Problem, problem_response)
    app.register_error_handler(HTTPException, lambda e: _http_error(e, max_body_bytes))
    # Every Redis error, not only a refused connection: during a failover the old primary
    # answers READONLY or MASTERDOWN, and the sentinels may know no primary for a while.
    app.register_error_handler(redis.RedisError, _redis_down)
    app.register_error_handler(kombu.exceptions.OperationalError, _redis_down)
    app.register_error_handler(Exception, _unexpected)
