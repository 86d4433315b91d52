"""Server-Sent Events from a job's or a training's event stream; a reconnect with
Last-Event-ID loses nothing."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import redis
from flask import Response

from shared.jobs.keys import job_key
from shared.jobs.records import JobEvent
from shared.jobs.store import JobStore
from shared.trainings.store import TrainingStore, training_key

log = logging.getLogger(__name__)

LAST_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
KEEPALIVE_S = 15.0
# Reads the events after a stream id, waiting up to so many milliseconds for some.
ReadEvents = Callable[[str, int], list[JobEvent]]


def format_event(event_id: str, event: str, data: str) -> str:
    """Return one SSE message (the data is single-line JSON)."""
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


def sse_messages(
    read: ReadEvents, exists: Callable[[], bool], last: Callable[[], JobEvent | None], after: str
) -> Iterator[str]:
    """Yield SSE messages of the events after stream id `after` until a `done` event, or until
    the record is gone. `last` returns the stream's newest event: a client resuming after the
    `done` event gets an empty stream, not keepalives."""
    yield "retry: 1000\n\n"
    newest = last()
    if newest is not None and newest.event == "done" and _order(newest.id) <= _order(after):
        return
    while True:
        events = read(after, int(KEEPALIVE_S * 1000))
        if not events:
            if not exists():
                return  # the record expired while we waited
            yield ": keepalive\n\n"
        for event in events:
            after = event.id
            yield format_event(event.id, event.event, event.data)
            if event.event == "done":
                return


def _order(event_id: str) -> tuple[int, int]:
    milliseconds, sequence = event_id.split("-")
    return int(milliseconds), int(sequence)


def job_events(store: JobStore, job_id: str, after: str) -> Iterator[str]:
    """Yield SSE messages after stream id `after` until the job's `done` event."""
    return _logged(
        sse_messages(
            lambda since, block: store.read_events(job_id, since, block_ms=block),
            lambda: bool(store.client.exists(job_key(job_id))),
            lambda: store.last_event(job_id),
            after,
        ),
        f"job {job_id}",
        {"job_id": job_id},
    )


def training_events(store: TrainingStore, training_id: str, after: str) -> Iterator[str]:
    """Yield SSE messages after stream id `after` until the training's `done` event."""
    return _logged(
        sse_messages(
            lambda since, block: store.read_events(training_id, since, block_ms=block),
            lambda: bool(store.client.exists(training_key(training_id))),
            lambda: store.last_event(training_id),
            after,
        ),
        f"training {training_id}",
        {},
    )


def _logged(messages: Iterator[str], what: str, extra: dict[str, str]) -> Iterator[str]:
    try:
        yield from messages
    except redis.RedisError as error:
        # Headers are sent already: end the stream; the client resumes with Last-Event-ID.
        log.warning("stream of %s ended: %s", what, error, extra=extra)


def sse_response(messages: Iterator[str]) -> Response:
    """Return the streaming response of SSE messages."""
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(messages, mimetype="text/event-stream", headers=headers)


def event_stream(store: JobStore, job_id: str, after: str) -> Response:
    """Return the streaming response of a job's events."""
    return sse_response(job_events(store, job_id, after))
