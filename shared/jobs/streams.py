"""Reading a record's event stream (a Redis stream of `event`, `data` entries) as JobEvents.

Jobs and trainings both keep one (their SSE ids are the stream ids); the stores name the key.
"""

from __future__ import annotations

from typing import Any

import redis

from shared.jobs.records import JobEvent


def read_events(
    client: redis.Redis, key: str, after: str, *, block_ms: int | None, count: int
) -> list[JobEvent]:
    """Return the events of stream `key` after id `after`, waiting up to `block_ms` for some."""
    reply: Any = client.xread({key: after}, count=count, block=block_ms)
    return [
        JobEvent(str(entry_id), entry["event"], entry["data"])
        for _stream, entries in reply or []
        for entry_id, entry in entries
    ]


def last_event(client: redis.Redis, key: str) -> JobEvent | None:
    """Return the newest event of stream `key`, if any."""
    reply: Any = client.xrevrange(key, count=1)
    if not reply:
        return None
    entry_id, entry = reply[0]
    return JobEvent(str(entry_id), entry["event"], entry["data"])
