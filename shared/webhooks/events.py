"""What happens to a job that a webhook can be told about, and how often `output` is sent."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

OUTPUT_EVENT_INTERVAL_S: Final = 0.5  # at most one `output` event per job per this interval


class WebhookEvent(StrEnum):
    """What happened to a job; `completed` is sent whatever the filter says."""

    START = "start"
    OUTPUT = "output"
    COMPLETED = "completed"


ALL_EVENTS: Final = tuple(WebhookEvent)


def wants_event(events_filter: Iterable[str] | None, event: WebhookEvent) -> bool:
    """Return whether a job with this filter is sent this event (`completed` always is)."""
    if event is WebhookEvent.COMPLETED or events_filter is None:
        return True
    return event.value in set(events_filter)
