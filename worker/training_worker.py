"""The training side of a worker process: the `lstmgen.train` task and `--training`.

`celery -A worker.celery_worker worker --training` consumes only `lstmgen.training`; its task
imports TensorFlow when the first training runs, so generation workers never load it. Each
training worker beats like a generation worker; at each beat it puts back in the queue the
trainings of training workers that stopped beating (they start again from their first epoch).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import click
import redis
from celery import Celery
from celery.exceptions import Reject

from shared import logs, metrics
from shared.catalog.catalog import ModelCatalog
from shared.celery_app import TRAIN_TASK, TRAINING_QUEUE, enqueue_training
from shared.settings import Settings
from shared.trainings.store import TrainingStore
from shared.trainings.webhooks import emit_training_event
from shared.webhooks.events import WebhookEvent

log = logging.getLogger(__name__)

HEARTBEAT_MISSES = 3  # a training worker silent for this many periods counts as down


class TrainingRole:
    """Adds `--training` and registers the training task on the worker's app."""

    def __init__(self, app: Celery, settings: Settings, catalog: ModelCatalog) -> None:
        self.app = app
        self.settings = settings
        self.store = TrainingStore.from_settings(settings)
        self.worker_id = "unstarted"
        self._stopping = threading.Event()
        app.user_options["worker"].add(
            click.Option(
                ["--training"],
                is_flag=True,
                default=False,
                help="Run training jobs: consume only the lstmgen.training queue.",
            )
        )

        @app.task(name=TRAIN_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
        def train_model(training_id: str) -> str:
            """Run one training to its end."""
            from worker.training_run import run_training  # TensorFlow, in this process only

            try:
                status = run_training(
                    self.store, catalog, self.settings, training_id, self.worker_id
                )
            except redis.RedisError as error:
                raise Reject(f"job store unavailable: {error}", requeue=True) from error
            return "skipped" if status is None else status.value

    def select_queue(self, worker: Any) -> None:
        """Consume only the training queue when the worker was started with `--training`."""
        if worker.options.get("training"):
            worker.app.amqp.queues.select([TRAINING_QUEUE])

    def start(self, sender: Any) -> None:
        """Start beating, under an id of this process alone, if this is a training worker."""
        if TRAINING_QUEUE not in (sender.app.amqp.queues.consume_from or {}):
            return
        self.worker_id = f"{sender.hostname}/{uuid.uuid4().hex[:8]}"
        self._beat_once()  # before any claim: a claimed training's worker is always alive
        threading.Thread(target=self._beat, name="training-heartbeat", daemon=True).start()
        logs.announce("training worker %s up", self.worker_id)

    def stop(self) -> None:
        """Stop beating and withdraw the heartbeat."""
        if self._stopping.is_set() or self.worker_id == "unstarted":
            return
        self._stopping.set()
        with contextlib.suppress(redis.RedisError):  # else the key just expires
            self.store.withdraw(self.worker_id)

    def _ttl(self) -> float:
        return self.settings.worker_heartbeat_s * HEARTBEAT_MISSES

    def _beat_once(self) -> bool:
        try:
            self.store.beat(self.worker_id, self._ttl())
        except redis.RedisError as error:
            log.warning("could not send the heartbeat: %s", error)
            return False
        return True

    def _beat(self) -> None:
        """Until the worker stops: beat, and requeue the trainings of lost training workers
        (only once this one has beaten for a whole heartbeat lifetime, as generation workers
        do, so that after an outage of Redis the live ones have beaten again first)."""
        beating_since: float | None = time.monotonic()
        while not self._stopping.wait(self.settings.worker_heartbeat_s):
            beat = self._beat_once()
            beating_since = (beating_since or time.monotonic()) if beat else None
            if beating_since and time.monotonic() - beating_since >= self._ttl():
                try:
                    self._requeue_lost()
                except redis.RedisError as error:
                    log.warning("could not requeue the trainings of lost workers: %s", error)

    def _requeue_lost(self) -> None:
        requeued, failed = self.store.requeue_lost(self.settings.max_attempts)
        for training in requeued:
            log.warning("training %s requeued: its worker stopped beating", training.id)
            enqueue_training(self.app, training.id)
        for training in failed:
            log.warning("training %s failed: %s", training.id, training.error)
            self.store.drop_corpus(training.id)
            metrics.record_training(self.store.client, training.status.value)
            emit_training_event(
                self.store, training, WebhookEvent.COMPLETED, self.settings.base_url
            )
