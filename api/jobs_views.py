"""`/v1/jobs`: create, read, list, cancel and stream generation jobs."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api.auth import authenticate, current_owner
from api.problems import FieldError, invalid, not_found
from api.services import services
from api.streaming import LAST_EVENT_ID, event_stream
from api.submission import requested_wait, submit, wait_until_final
from api.validation import read_json_object
from shared.jobs.lifecycle import Ended
from shared.jobs.records import JOB_ID_PATTERN, CancelOutcome, Job, JobStatus
from shared.jobs.serialize import serialize_job

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
bp.before_request(authenticate)

MAX_PAGE = 100
_JOB_ID = re.compile(JOB_ID_PATTERN)


def _job_response(job: Job, status: int = 200) -> Response:
    response = jsonify(serialize_job(job, services().settings.base_url))
    response.status_code = status
    return response


def _owned_job(job_id: str) -> Job:
    job = services().store.owned(job_id, current_owner()) if _JOB_ID.match(job_id) else None
    if job is None:
        raise not_found(f"job {job_id!r}")
    return job


def _create(payload: dict[str, Any], job_id: str | None, idempotency: str | None) -> Response:
    submitted = submit(services(), current_owner(), payload, job_id=job_id, idempotency=idempotency)
    job = submitted.job
    wait = requested_wait(request.headers.get("Prefer"), services().settings.max_wait_s)
    if wait is not None and not job.status.is_final:
        wait_until_final(services(), job.id, wait)
        job = services().store.get(job.id) or job
    response = _job_response(job, 201 if submitted.created else 200)
    response.headers["Location"] = url_for("jobs.get_job", job_id=job.id)
    if wait is not None:
        response.headers["Preference-Applied"] = f"wait={wait:g}"
    return response


@bp.post("")
def create_job() -> Response:
    """Create a job; an `Idempotency-Key` header makes a retried create return the same job."""
    idempotency = request.headers.get("Idempotency-Key")
    if idempotency is not None and not 1 <= len(idempotency) <= 255:
        raise invalid([FieldError("Idempotency-Key", "must be 1 to 255 characters")])
    return _create(read_json_object(request), None, idempotency)


@bp.put("/<job_id>")
def put_job(job_id: str) -> Response:
    """Create a job with the client's id, or return the job already created with it."""
    if not _JOB_ID.match(job_id):
        message = "must be 1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
        raise invalid([FieldError("id", message)])
    return _create(read_json_object(request), job_id, None)


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    """Return a job with its output so far."""
    return _job_response(_owned_job(job_id))


@bp.post("/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    """Cancel a job: a queued one never starts, a running one stops within a second."""
    job = _owned_job(job_id)
    ended_here = services().store.cancel(job.id, job.n) is CancelOutcome.CANCELED
    job = services().store.get(job.id) or job
    if ended_here:  # it was still queued: no worker will report its end
        services().lifecycle.finished(Ended.unrun(job))
    return _job_response(job)


@bp.get("/<job_id>/stream")
def stream_job(job_id: str) -> Response:
    """Stream the job's output chunks and status changes as Server-Sent Events."""
    job = _owned_job(job_id)
    last = request.headers.get("Last-Event-ID", "0-0")
    if not LAST_EVENT_ID.match(last):
        raise invalid([FieldError("Last-Event-ID", "must be an event id from this stream")])
    return event_stream(services().store, job.id, last)


def _parse_list_args() -> tuple[list[JobStatus], int, tuple[float, str] | None]:
    errors = []
    statuses: list[JobStatus] = []
    for value in request.args.getlist("status"):
        for part in value.split(","):
            if part in JobStatus.__members__.values():
                statuses.append(JobStatus(part))
            else:
                choices = ", ".join(s.value for s in JobStatus)
                errors.append(FieldError("status", f"unknown status {part!r} (one of {choices})"))
    limit_text = request.args.get("limit", "20")
    limit = int(limit_text) if limit_text.isdigit() else 0
    if not 1 <= limit <= MAX_PAGE:
        errors.append(FieldError("limit", f"must be an integer from 1 to {MAX_PAGE}"))
    cursor = None
    if "cursor" in request.args:
        cursor = decode_cursor(request.args["cursor"])
        if cursor is None:
            errors.append(FieldError("cursor", "not a cursor returned by this API"))
    if errors:
        raise invalid(errors)
    return statuses, limit, cursor


@bp.get("")
def list_jobs() -> Response:
    """Return the caller's jobs, newest first, a page at a time."""
    statuses, limit, cursor = _parse_list_args()
    jobs, following = services().store.list_jobs(
        current_owner(), statuses=statuses, limit=limit, before=cursor
    )
    base_url = services().settings.base_url
    return jsonify(
        {
            "jobs": [serialize_job(job, base_url) for job in jobs],
            "next_cursor": None if following is None else encode_cursor(following),
        }
    )


def encode_cursor(position: tuple[float, str]) -> str:
    """Return an opaque page cursor for a position in the job index."""
    return base64.urlsafe_b64encode(f"{position[0]!r}|{position[1]}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str] | None:
    """Return the position encoded in a page cursor, or None if it is not one."""
    try:
        score, _, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return (float(score), job_id) if _JOB_ID.match(job_id) else None
    except (ValueError, binascii.Error):
        return None
