"""Training records in Redis: create, read, claim, progress, finish, cancel.

Each record is one JSON string under `lstmgen:training:<id>`; every change is a
compare-and-set (WATCH) so a cancel and a worker's finish cannot overwrite each other, and the
key's TTL follows the job TTLs (`JobTTLs`): the active one until final, then retention.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from shared.jobs.records import JobStatus, JobTTLs
from shared.redis_connection import connect
from shared.settings import Settings
from shared.trainings.records import EpochMetrics, Progress, Training

PREFIX = "lstmgen:training:"
CANCEL_PREFIX = "lstmgen:training-cancel:"
CORPUS_PREFIX = "lstmgen:training-corpus:"  # the text, kept apart from the record


def training_key(training_id: str) -> str:
    """Return the key of a training record."""
    return PREFIX + training_id


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
        return bool(self.client.set(key, training.to_json(), nx=True, ex=self.ttls.active_s))

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
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue

    def claim(self, training_id: str) -> Training | None:
        """Mark a queued training running; None if it is not queued (canceled, say)."""
        claimed: list[Training] = []

        def start(t: Training) -> Training | None:
            if t.status is not JobStatus.QUEUED:
                return None
            claimed.append(t.with_changes(status=JobStatus.RUNNING, started_at=time.time()))
            return claimed[-1]

        self.change(training_id, start)
        return claimed[-1] if claimed else None

    def report(
        self, training_id: str, progress: Progress, metrics: tuple[EpochMetrics, ...]
    ) -> None:
        """Record the progress and metrics of a running training."""
        self.change(
            training_id,
            lambda t: (
                t.with_changes(progress=progress, metrics=metrics)
                if t.status is JobStatus.RUNNING
                else None
            ),
        )

    def finish(self, training_id: str, status: JobStatus, error: str | None = None) -> Training:
        """End a running or queued training with a final status (a final one stays)."""

        def end(t: Training) -> Training | None:
            if t.status.is_final:
                return None
            return t.with_changes(status=status, error=error, finished_at=time.time())

        ended = self.change(training_id, end)
        assert ended is not None, f"training {training_id} vanished"
        return ended

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
