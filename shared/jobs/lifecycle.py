"""A job's lifecycle: started, output and finished, told once to every listener.

Whoever ends a job reports it here and nowhere else: the worker for every job it claims (its
runtime and batch loop), the API for a job canceled while still queued. The log, the metrics
and the webhooks subscribe as listeners, the way dramatiq's middleware hook into a worker. A
listener never raises into generation: its error is logged and the next one runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis

from shared import metrics
from shared.jobs.records import Job, JobStatus
from shared.jobs.store import JobStore
from shared.webhooks.deliveries import notify_job_event, queue_job_event
from shared.webhooks.events import WebhookEvent

log = logging.getLogger(__name__)
T = TypeVar("T")  # what one hook is told: a job id or an Ended
COMPLETED_RETRY_S = 300.0  # how long a `completed` webhook is retried while Redis is away


@dataclass(frozen=True)
class Ended:
    """A job that reached a final status."""

    job_id: str
    model: str
    status: JobStatus
    chars: int  # characters generated, all samples together
    total_s: float  # from submission to the end
    generation_s: float | None = None  # time in this worker's batch; None if it never ran

    @classmethod
    def unrun(cls, job: Job) -> Ended:
        """Return the end of a job that never ran in a batch (canceled, expired, failed queued)."""
        end = job.completed_at if job.completed_at is not None else time.time()
        return cls(job.id, job.model, job.status, job.done, total_s=end - job.created_at)


class Listener:
    """Hooks on the lifecycle of jobs; a subclass overrides those it needs."""

    def started(self, job_id: str) -> None:
        """A worker claimed the job and is about to generate."""

    def output(self, job_id: str) -> None:
        """New text of a job that asked for `output` events was stored (throttled)."""

    def finished(self, ended: Ended) -> None:
        """The job reached a final status (whether it ran or not)."""


class Lifecycle:
    """Tells each listener, in order, what happened to a job."""

    def __init__(self, listeners: Sequence[Listener]) -> None:
        self.listeners = tuple(listeners)

    def started(self, job_id: str) -> None:
        """Report that a job starts generating."""
        for listener in self.listeners:
            self._call(listener.started, job_id)

    def output(self, job_id: str) -> None:
        """Report new stored text of a job that wants `output` events."""
        for listener in self.listeners:
            self._call(listener.output, job_id)

    def finished(self, ended: Ended) -> None:
        """Report that a job reached a final status."""
        for listener in self.listeners:
            self._call(listener.finished, ended)

    @staticmethod
    def _call(hook: Callable[[T], None], argument: T) -> None:
        try:
            hook(argument)
        except Exception:
            log.exception("a job lifecycle listener failed")


class JobLog(Listener):
    """One log line per job start and end (output events at debug level)."""

    def started(self, job_id: str) -> None:
        """Log the start."""
        log.info("job started", extra={"job_id": job_id})

    def output(self, job_id: str) -> None:
        """Log the output event."""
        log.debug("job output", extra={"job_id": job_id})

    def finished(self, ended: Ended) -> None:
        """Log the end with its figures."""
        log.info(
            "job ended %s: %d characters, %.2f s after submission",
            ended.status.value,
            ended.chars,
            ended.total_s,
            extra={"job_id": ended.job_id},
        )


class Metrics(Listener):
    """Count ended jobs, their characters, speed and time to finish (see `shared.metrics`)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def finished(self, ended: Ended) -> None:
        """Record the ended job."""
        metrics.record_finished(
            self.client,
            model=ended.model,
            status=ended.status.value,
            chars=ended.chars,
            generation_s=ended.generation_s,
            total_s=ended.total_s,
        )


class Webhooks(Listener):
    """Queue the job's webhook deliveries (jobs without a webhook cost one read)."""

    def __init__(self, store: JobStore, base_url: str) -> None:
        self.store = store
        self.base_url = base_url  # where the job objects sent point

    def started(self, job_id: str) -> None:
        """Queue the `start` event."""
        notify_job_event(self.store, job_id, WebhookEvent.START, self.base_url)

    def output(self, job_id: str) -> None:
        """Queue an `output` event."""
        notify_job_event(self.store, job_id, WebhookEvent.OUTPUT, self.base_url)

    def finished(self, ended: Ended) -> None:
        """Queue the `completed` event; while Redis cannot take it (a failover, say), try
        again in the background: the one event every webhook gets must not be lost."""
        self._completed(ended.job_id, time.monotonic() + COMPLETED_RETRY_S, 0.25)

    def _completed(self, job_id: str, deadline: float, delay: float) -> None:
        try:
            queue_job_event(self.store, job_id, WebhookEvent.COMPLETED, self.base_url)
            return
        except redis.RedisError as error:
            if time.monotonic() + delay > deadline:
                log.error("gave up queueing the completed webhook of job %s: %s", job_id, error)
                return
            log.warning("could not queue the completed webhook of job %s yet: %s", job_id, error)
        retry = threading.Timer(delay, self._completed, (job_id, deadline, min(2 * delay, 5.0)))
        retry.daemon = True
        retry.start()


def service_lifecycle(store: JobStore, base_url: str) -> Lifecycle:
    """Return the lifecycle of the service's processes: the log, metrics, then webhooks."""
    return Lifecycle([JobLog(), Metrics(store.client), Webhooks(store, base_url)])
