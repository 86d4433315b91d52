"""The Node server this service replaces: `GET /?inputText=...` on any path, and `/generate`.

Its clients send `inputText`, `model`, `outputLength` (and `temperature`) as query parameters
and read `{"generated": text}`, the text after the seed. Any GET outside `/v1/` that carries
`inputText` is answered that way; `/` without it stays the web page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from api.auth import authenticate, current_owner
from api.problems import FieldError, Problem, invalid
from api.services import services
from api.submission import submit, wait_until_final
from shared.jobs.records import JobStatus

bp = Blueprint("compat", __name__)

# Query parameter -> job field; problems name the parameter the caller sent.
PARAMETERS = {
    "inputText": "seed",
    "model": "model",
    "outputLength": "length",
    "temperature": "temperature",
}
FIELDS = {field: parameter for parameter, field in PARAMETERS.items()}


def _payload() -> dict[str, Any]:
    settings = services().settings
    payload: dict[str, Any] = {
        "model": settings.compat_model or settings.default_model,
        "length": settings.compat_length,
        "temperature": settings.compat_temperature,
    }
    errors = []
    for parameter, field in PARAMETERS.items():
        value = request.args.get(parameter)
        if value is None:
            continue
        if field == "length":
            if not value.isdigit():
                errors.append(FieldError(parameter, "must be a positive integer"))
                continue
            payload[field] = int(value)
        elif field == "temperature":
            try:
                payload[field] = float(value)
            except ValueError:
                errors.append(FieldError(parameter, "must be a number"))
        else:
            payload[field] = value
    if errors:
        raise invalid(errors)
    return payload


def _renamed(problem: Problem) -> Problem:
    for index, error in enumerate(problem.errors):
        problem.errors[index] = FieldError(FIELDS.get(error.field, error.field), error.message)
    problem.detail = "; ".join(f"{e.field}: {e.message}" for e in problem.errors) or problem.detail
    return problem


def answer_node_request() -> Response:
    """Generate text and answer `{"generated": text}` (the seed not included)."""
    authenticate()
    try:
        job = submit(services(), current_owner(), _payload()).job
    except Problem as problem:
        raise _renamed(problem) from None
    wait_until_final(services(), job.id, services().settings.max_wait_s)
    job = services().store.get(job.id) or job
    if job.status is JobStatus.SUCCEEDED:
        return jsonify({"generated": job.outputs[0]})
    if not job.status.is_final:
        detail = f"job {job.id} is still {job.status.value}; follow it at /v1/jobs/{job.id}"
        raise Problem(
            504, "Generation took too long", detail, "wait-timeout", extra={"job_id": job.id}
        )
    reason = job.error.message if job.error else job.status.value
    raise Problem(
        502,
        "Generation failed",
        f"job {job.id} ended {job.status.value}: {reason}",
        "generation-failed",
        extra={"job_id": job.id},
    )


@bp.get("/generate")
def generate() -> Response:
    """Answer the Node server's query at its `/generate` path (no `inputText`: the default seed)."""
    return answer_node_request()


def _node_client() -> Response | None:
    """Answer a Node client's `GET <any path>?inputText=...` before any route does."""
    node_style = request.method == "GET" and "inputText" in request.args
    if node_style and not request.path.startswith("/v1/"):
        return answer_node_request()
    return None


def init_app(app: Flask) -> None:
    """Register the route and the hook that answer the Node server's clients."""
    app.register_blueprint(bp)
    app.before_request(_node_client)
