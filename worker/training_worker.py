"""The training side of a worker process: the `lstmgen.train` task and `--training`.

`celery -A worker.celery_worker worker --training` consumes only `lstmgen.training`; its task
imports TensorFlow when the first training runs, so generation workers never load it.
"""

from __future__ import annotations

from typing import Any

import click
import redis
from celery import Celery
from celery.exceptions import Reject

from shared.catalog.catalog import ModelCatalog
from shared.celery_app import TRAIN_TASK, TRAINING_QUEUE
from shared.settings import Settings
from shared.trainings.store import TrainingStore


class TrainingRole:
    """Adds `--training` and registers the training task on the worker's app."""

    def __init__(self, app: Celery, settings: Settings, catalog: ModelCatalog) -> None:
        self.settings = settings
        self.store = TrainingStore.from_settings(settings)
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
                status = run_training(self.store, catalog, self.settings, training_id)
            except redis.RedisError as error:
                raise Reject(f"job store unavailable: {error}", requeue=True) from error
            return "skipped" if status is None else status.value

    def select_queue(self, worker: Any) -> None:
        """Consume only the training queue when the worker was started with `--training`."""
        if worker.options.get("training"):
            worker.app.amqp.queues.select([TRAINING_QUEUE])
