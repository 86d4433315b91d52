"""Jobs as text: the Redis hash of a record, the JSON the API shows, `output` event data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.jobs.records import Job, JobError, JobInput, JobStatus, NewJob


def output_event(index: int, chunk: str, done: int) -> str:
    """Return the data of an `output` event."""
    event = {"stream": index, "text": chunk, "done": done}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def isoformat(timestamp: float | None) -> str | None:
    """Return a Unix time as an ISO 8601 UTC string (or None)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_metrics(job: Job) -> dict[str, float | None]:
    """Return queue, generation and total times and the generation speed of a job."""
    end = job.completed_at
    queue = None if job.started_at is None else job.started_at - job.created_at
    generation = None if job.started_at is None or end is None else end - job.started_at
    total = None if end is None else end - job.created_at
    speed = job.done / generation if generation else None
    return {
        "queue_time_s": _round(queue),
        "generation_time_s": _round(generation),
        "total_time_s": _round(total),
        "chars_per_s": _round(speed),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(max(value, 0.0), 4)


def serialize_job(job: Job, base_url: str) -> dict[str, Any]:
    """Return the job object as the API shows it (and webhooks send it)."""
    url = f"{base_url.rstrip('/')}/v1/jobs/{job.id}"
    single = job.n == 1
    reasons = list(job.finish_reasons) if job.finish_reasons else None
    return {
        "id": job.id,
        "status": job.status.value,
        "model": job.model,
        "input": job.input.to_json(),
        "output": job.outputs[0] if single else list(job.outputs),
        "progress": {"done": job.done, "total": job.total},
        "error": None
        if job.error is None
        else {"type": job.error.type, "message": job.error.message},
        "finish_reason": (reasons[0] if single else reasons) if reasons else None,
        "random_seed": job.random_seed,
        "attempts": job.attempts,
        "metrics": job_metrics(job),
        "created_at": isoformat(job.created_at),
        "started_at": isoformat(job.started_at),
        "completed_at": isoformat(job.completed_at),
        "expires_at": isoformat(job.expires_at),
        "urls": {"get": url, "cancel": f"{url}/cancel", "stream": f"{url}/stream"},
        "webhook": job.webhook,
        "webhook_events_filter": list(job.webhook_events_filter),
        "metadata": job.metadata,
    }


def _float(value: str | None) -> float | None:
    return None if value is None or value == "" else float(value)


def new_job_fields(job: NewJob) -> dict[str, str]:
    """Return the hash fields of a job the API accepts (the create script adds the rest)."""
    fields = {
        "id": job.id,
        "owner": job.owner,
        "model": job.model,
        "input": json.dumps(job.input.to_json(), ensure_ascii=False),
        "n": job.n,
        "random_seed": job.random_seed,
        "total": job.total,
        "fingerprint": job.fingerprint,
        "webhook": job.webhook or "",
        "webhook_events_filter": json.dumps(list(job.webhook_events_filter)),
        "metadata": json.dumps(job.metadata, ensure_ascii=False),
        "rank": job.rank,
        "weight": job.weight,
        "max_running": job.max_running,
    }
    return {name: str(value) for name, value in fields.items()}


def job_from_hash(record: dict[str, str], outputs: Sequence[str | None]) -> Job:
    """Return the job of a record hash and its output strings."""
    error = None
    if record.get("error_type"):
        error = JobError(record["error_type"], record.get("error_message", ""))
    return Job(
        id=record["id"],
        owner=record["owner"],
        status=JobStatus(record["status"]),
        model=record["model"],
        input=JobInput.from_json(json.loads(record["input"])),
        n=int(record["n"]),
        random_seed=int(record["random_seed"]),
        outputs=tuple(text or "" for text in outputs),
        done=int(record.get("done", "0")),
        total=int(record["total"]),
        attempts=int(record.get("attempts", "0")),
        created_at=float(record["created_at"]),
        started_at=_float(record.get("started_at")),
        completed_at=_float(record.get("completed_at")),
        expires_at=_float(record.get("expires_at")),
        error=error,
        finish_reasons=tuple(json.loads(record.get("finish_reason") or "[]")),
        webhook=record.get("webhook") or None,
        webhook_events_filter=tuple(json.loads(record.get("webhook_events_filter", "[]"))),
        metadata=json.loads(record.get("metadata", "{}")),
        worker=record.get("worker") or None,
        cancel_requested=record.get("cancel_requested") == "1",
    )
