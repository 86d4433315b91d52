"""Training records in Redis: create, read, claim, progress, finish, cancel.

Each record is one JSON string under `lstmgen:training:<id>`; every change is a
compare-and-set (WATCH) so a cancel and a worker's finish cannot overwrite each other, and the
key's TTL follows the job TTLs (`JobTTLs`): the active one until final, then retention. The
running trainings are indexed with their record's writes, so that those of a training worker
that stopped beating go back to the queue. The same transaction appends what changed to the
training's event stream (`lstmgen:training-events:<id>`, with the record's TTL): `status`,
`progress`, `metrics` (one per finished epoch) and, last, `done`, whose stream ids are the SSE
ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import redis

from shared.jobs import streams
from shared.jobs.records import JobEvent, JobStatus, JobTTLs
from shared.redis_connection import connect
from shared.settings import Settings
from shared.trainings.records import EpochMetrics, Progress, Training

PREFIX = "lstmgen:training:"
CANCEL_PREFIX = "lstmgen:training-cancel:"
CORPUS_PREFIX = "lstmgen:training-corpus:"  # the text, kept apart from the record
RUNNING_KEY = "lstmgen:trainings:running"  # ids of the running trainings
BEAT_PREFIX = "lstmgen:training-worker:"  # a key per live training worker, with a TTL
EVENTS_PREFIX = "lstmgen:training-events:"


def training_key(training_id: str) -> str:
    """Return the key of a training record."""
    return PREFIX + training_id


def events_key(training_id: str) -> str:
    """Return the key of a training's event stream."""
    return EVENTS_PREFIX + training_id


def changes(before: Training | None, after: Training) -> list[tuple[str, dict[str, Any]]]:
    """Return the events that tell the change from `before` (None: a new record) to `after`."""
    events: list[tuple[str, dict[str, Any]]] = []
    if before is None or before.status is not after.status:
        status: dict[str, Any] = {"status": after.status.value}
        if after.error is not None:
            status["error"] = after.error
        events.append(("status", status))
    for metrics in after.metrics[len(before.metrics) if before else 0 :]:
        events.append(("metrics", asdict(metrics)))
    if before is not None and before.progress != after.progress:
        events.append(("progress", asdict(after.progress)))
    if after.status.is_final and (before is None or not before.status.is_final):
        events.append(("done", {"status": after.status.value}))
    return events


class TrainingStore:
    """Reads and compare-and-set writes of training records."""

    def __init__(self, client: redis.Redis, ttls: JobTTLs) -> None:
        self.client = client
        self.ttls = ttls

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainingStore:
        """Connect to the settings' Redis."""
        client = connect(settings.redis_url, settings.redis_sentinel_master)
        return cls(client, JobTTLs.from_settings(settings))

    def create(self, training: Training) -> bool:
        """Store a new record; False if one with its id exists."""
        key = training_key(training.id)
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                if pipe.exists(key):
                    return False
                pipe.multi()
                pipe.set(key, training.to_json(), ex=self.ttls.active_s)
                self._append(pipe, None, training, self.ttls.active_s)
                pipe.execute()
            except redis.WatchError:  # made meanwhile under the same id
                return False
        return True

    def _append(
        self, pipe: redis.client.Pipeline, before: Training | None, after: Training, ttl: int
    ) -> None:
        """Queue on `pipe` the events of a change, and the stream's TTL (the record's)."""
        key = events_key(after.id)
        for event, data in changes(before, after):
            pipe.xadd(key, {"event": event, "data": json.dumps(data)})
        pipe.expire(key, ttl)

    def read_events(
        self, training_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 500
    ) -> list[JobEvent]:
        """Return the events after stream id `after`, waiting up to `block_ms` for some."""
        return streams.read_events(
            self.client, events_key(training_id), after, block_ms=block_ms, count=count
        )

    def last_event(self, training_id: str) -> JobEvent | None:
        """Return the newest event of a training's stream, if any."""
        return streams.last_event(self.client, events_key(training_id))

    def put_corpus(self, training_id: str, text: str) -> None:
        """Keep a training's corpus until its worker takes it."""
        self.client.set(CORPUS_PREFIX + training_id, text, ex=self.ttls.active_s)

    def corpus(self, training_id: str) -> str | None:
        """Return a training's corpus, or None if it expired."""
        text = self.client.get(CORPUS_PREFIX + training_id)
        return None if text is None else str(text)

    def drop_corpus(self, training_id: str) -> None:
        """Delete a training's corpus once it is no longer needed."""
        self.client.delete(CORPUS_PREFIX + training_id)

    def get(self, training_id: str) -> Training | None:
        """Return a record, or None."""
        text = self.client.get(training_key(training_id))
        return None if text is None else Training.from_json(str(text))

    def owned(self, training_id: str, owner: str) -> Training | None:
        """Return a record if `owner` made it."""
        training = self.get(training_id)
        return training if training is not None and training.owner == owner else None

    def change(
        self, training_id: str, update: Callable[[Training], Training | None]
    ) -> Training | None:
        """Apply `update` to a record atomically (None from it: no change); return the result."""
        key = training_key(training_id)
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    text = pipe.get(key)
                    if text is None:
                        return None
                    current = Training.from_json(str(text))
                    changed = update(current)
                    if changed is None:
                        pipe.unwatch()
                        return current
                    ttl = self.ttls.final_s if changed.status.is_final else self.ttls.active_s
                    pipe.multi()
                    pipe.set(key, changed.to_json(), ex=ttl)
                    self._append(pipe, current, changed, ttl)
                    if changed.status is JobStatus.RUNNING:
                        pipe.zadd(RUNNING_KEY, {training_id: time.time()})
                    else:
                        pipe.zrem(RUNNING_KEY, training_id)
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue

    def claim(self, training_id: str, worker: str) -> Training | None:
        """Mark a queued training running on `worker`; None if it is not queued (canceled, or
        taken up by another worker)."""
        claimed: list[Training] = []

        def start(t: Training) -> Training | None:
            if t.status is not JobStatus.QUEUED:
                return None
            started = t.with_changes(
                status=JobStatus.RUNNING,
                started_at=time.time(),
                worker=worker,
                attempts=t.attempts + 1,
            )
            claimed.append(started)
            return started

        self.change(training_id, start)
        return claimed[-1] if claimed else None

    def report(
        self, training_id: str, worker: str, progress: Progress, metrics: tuple[EpochMetrics, ...]
    ) -> bool:
        """Record the progress and metrics of a training `worker` runs; False if it no longer
        runs it (it ended, or another attempt took it over)."""
        changed = self.change(
            training_id,
            lambda t: (
                t.with_changes(progress=progress, metrics=metrics) if _runs(t, worker) else None
            ),
        )
        return changed is not None and _runs(changed, worker)

    def finish(
        self, training_id: str, status: JobStatus, error: str | None = None, worker: str = ""
    ) -> Training | None:
        """End a training with a final status: one `worker` runs, or (no worker) a queued one;
        None if it is not theirs to end (a final one stays, another attempt runs it)."""

        def end(t: Training) -> Training | None:
            if not (_runs(t, worker) or (not worker and t.status is JobStatus.QUEUED)):
                return None
            return t.with_changes(status=status, error=error, finished_at=time.time())

        ended = self.change(training_id, end)
        return ended if ended is not None and ended.status is status else None

    def beat(self, worker: str, ttl_s: float) -> None:
        """Say that a training worker is alive for `ttl_s` more seconds."""
        self.client.set(BEAT_PREFIX + worker, "1", px=max(1, int(ttl_s * 1000)))

    def withdraw(self, worker: str) -> None:
        """Say that a training worker stopped."""
        self.client.delete(BEAT_PREFIX + worker)

    def requeue_lost(self, max_attempts: int) -> tuple[list[Training], list[Training]]:
        """Put back in the queue the running trainings whose worker stopped beating, from
        their first epoch; fail those lost `max_attempts` times. Return both lists."""
        running: list[str] = self.client.zrange(RUNNING_KEY, 0, -1)  # type: ignore[assignment]
        requeued: list[Training] = []
        failed: list[Training] = []
        for training_id in running:
            found = self.get(training_id)
            if found is None or found.status is not JobStatus.RUNNING:
                self.client.zrem(RUNNING_KEY, training_id)
                continue
            if found.worker and self.client.exists(BEAT_PREFIX + found.worker):
                continue
            worker = found.worker
            changed = self.change(training_id, lambda t: _lost(t, worker, max_attempts))  # noqa: B023
            if changed is None or changed.worker == found.worker:
                continue
            (failed if changed.status.is_final else requeued).append(changed)
        return requeued, failed

    def cancel(self, training_id: str) -> Training | None:
        """Cancel a training: a queued one ends now, a running one stops at its next step."""
        self.client.set(CANCEL_PREFIX + training_id, "1", ex=self.ttls.active_s)
        return self.change(
            training_id,
            lambda t: (
                t.with_changes(status=JobStatus.CANCELED, finished_at=time.time())
                if t.status is JobStatus.QUEUED
                else None
            ),
        )

    def cancel_requested(self, training_id: str) -> bool:
        """Return whether a cancel was asked for."""
        return bool(self.client.exists(CANCEL_PREFIX + training_id))


def _runs(training: Training, worker: str) -> bool:
    """Return whether `worker` is the one running a training now."""
    return training.status is JobStatus.RUNNING and bool(worker) and training.worker == worker


def _lost(training: Training, worker: str | None, max_attempts: int) -> Training | None:
    """Requeue, or fail, a training still running on a worker taken for dead."""
    if training.status is not JobStatus.RUNNING or training.worker != worker:
        return None
    if training.attempts >= max_attempts:
        message = f"training worker lost {training.attempts} times while running this training"
        return training.with_changes(
            status=JobStatus.FAILED, error=message, finished_at=time.time(), worker=None
        )
    return training.with_changes(
        status=JobStatus.QUEUED, worker=None, started_at=None, progress=Progress(), metrics=()
    )
