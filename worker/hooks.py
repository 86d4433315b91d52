"""The one place a job's lifecycle events leave the generation worker (webhooks hang off it)."""

from __future__ import annotations

import logging
from enum import StrEnum

from shared.jobs.store import JobStore
from shared.webhooks.deliveries import notify_job_event

log = logging.getLogger(__name__)


class JobEventType(StrEnum):
    """Lifecycle events a webhook can subscribe to."""

    START = "start"
    OUTPUT = "output"  # throttled by the caller: at most one per OUTPUT_INTERVAL_S per job
    COMPLETED = "completed"  # always emitted once the job is final


OUTPUT_INTERVAL_S = 0.5


def on_job_event(store: JobStore, job_id: str, event: JobEventType) -> None:
    """Record that a job reached a lifecycle event; must never raise into generation."""
    # `store` is here for delivery: the webhook body is the job as the store shows it.
    level = logging.DEBUG if event is JobEventType.OUTPUT else logging.INFO
    log.log(level, "job event %s", event.value, extra={"job_id": job_id, "event": event.value})
    notify_job_event(store, job_id, event.value)
