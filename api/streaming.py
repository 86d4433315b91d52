"""Server-Sent Events from a job's event stream; a reconnect with Last-Event-ID loses nothing."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import redis
from flask import Response

from shared.jobs.keys import job_key
from shared.jobs.store import JobStore

log = logging.getLogger(__name__)

LAST_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
KEEPALIVE_S = 15.0


def format_event(event_id: str, event: str, data: str) -> str:
    """Return one SSE message (the data is single-line JSON)."""
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


def job_events(store: JobStore, job_id: str, after: str) -> Iterator[str]:
    """Yield SSE messages after stream id `after` until the job's `done` event."""
    yield "retry: 1000\n\n"
    try:
        while True:
            events = store.read_events(job_id, after, block_ms=int(KEEPALIVE_S * 1000))
            if not events:
                if not store.client.exists(job_key(job_id)):
                    return  # the record expired while we waited
                yield ": keepalive\n\n"
            for event in events:
                after = event.id
                yield format_event(event.id, event.event, event.data)
                if event.event == "done":
                    return
    except redis.RedisError as error:
        # Headers are sent already: end the stream; the client resumes with Last-Event-ID.
        log.warning("stream of job %s ended: %s", job_id, error, extra={"job_id": job_id})


def event_stream(store: JobStore, job_id: str, after: str) -> Response:
    """Return the streaming response of a job's events."""
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(job_events(store, job_id, after), mimetype="text/event-stream", headers=headers)
