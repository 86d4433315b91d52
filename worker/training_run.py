"""One training job, start to end: train with TensorFlow, report, publish the model.

Imported only inside the training task, so only `--training` workers load TensorFlow.
"""

from __future__ import annotations

import logging
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import metrics
from shared.catalog.archive import ArchiveError, ArchiveLimits
from shared.catalog.catalog import ModelCatalog
from shared.catalog.publish import publish_folder
from shared.jobs.records import JobStatus
from shared.settings import Settings
from shared.trainings.records import EpochMetrics, Progress, Training
from shared.trainings.store import TrainingStore
from shared.trainings.webhooks import emit_training_event
from shared.webhooks.events import WebhookEvent
from training.backend import keras
from training.errors import TrainingError
from training.train import bits, train

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The run must end now, with this status (canceled, timed out)."""

    def __init__(self, status: JobStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Reporter:
    """Where a run writes progress, and when it must stop."""

    store: TrainingStore
    training_id: str
    worker: str  # the id this process runs trainings under
    deadline: float  # time.monotonic() past which the run times out
    interval_s: float  # progress is written at most this often


class ProgressCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Write (epoch, step, losses) at a bounded rate; stop on cancel or past the deadline."""

    def __init__(self, reporter: Reporter, epochs: int) -> None:
        super().__init__()
        self.reporter = reporter
        self.progress = Progress(epochs=epochs)
        self.metrics: list[EpochMetrics] = []
        self.last_write = 0.0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        steps = int(self.params.get("steps") or 0)
        self.progress = Progress(epoch, self.progress.epochs, 0, steps)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        p = self.progress
        self.progress = Progress(p.epoch, p.epochs, batch + 1, max(p.steps, batch + 1))
        if time.monotonic() - self.last_write >= self.reporter.interval_s:
            self._write()  # first: a run that stops here shows how far it got
        self._check()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        logs = logs or {}
        val = logs.get("val_loss")
        self.metrics.append(
            EpochMetrics(
                epoch + 1,
                round(bits(logs["loss"]), 5),
                None if val is None else round(bits(val), 5),
            )
        )
        p = self.progress
        self.progress = Progress(epoch + 1, p.epochs, p.steps, p.steps)
        self._write()
        self._check()

    def _check(self) -> None:
        if self.reporter.store.cancel_requested(self.reporter.training_id):
            raise Stopped(JobStatus.CANCELED, "canceled")
        if time.monotonic() > self.reporter.deadline:
            raise Stopped(JobStatus.TIMED_OUT, "the training ran past its time limit")

    def _write(self) -> None:
        self.last_write = time.monotonic()
        r = self.reporter
        if not r.store.report(r.training_id, r.worker, self.progress, tuple(self.metrics)):
            raise Stopped(JobStatus.FAILED, "this training no longer runs here")


def run_training(
    store: TrainingStore, catalog: ModelCatalog, settings: Settings, training_id: str, worker: str
) -> JobStatus | None:
    """Run a queued training to its end on `worker`; None if it was no longer queued, or
    another attempt took it over meanwhile (this process was taken for dead)."""
    training = store.claim(training_id, worker)
    if training is None:
        return None
    emit_training_event(store, training, WebhookEvent.START, settings.base_url)
    try:
        status, error = _train_and_publish(store, catalog, settings, training, worker)
    except Exception as failure:  # the record must end whatever broke
        log.exception("training %s failed", training_id)
        status, error = JobStatus.FAILED, f"{type(failure).__name__}: {failure}"
    ended = store.finish(training_id, status, error, worker=worker)
    if ended is None:
        log.warning("training %s was taken over by another attempt; this one ends", training_id)
        return None
    store.drop_corpus(training_id)
    metrics.record_training(store.client, status.value)
    emit_training_event(store, ended, WebhookEvent.COMPLETED, settings.base_url)
    log.info("training %s ended %s", training_id, status.value)
    return status


def _train_and_publish(
    store: TrainingStore, catalog: ModelCatalog, settings: Settings, training: Training, worker: str
) -> tuple[JobStatus, str | None]:
    text = store.corpus(training.id)
    if text is None:
        return JobStatus.FAILED, "the corpus expired before the training started"
    params = training.params
    overrides: dict[str, Any] = {
        "epochs": params["epochs"],
        "seq_len": params["seq_len"],
        "batch_size": params["batch_size"],
        "learning_rate": params["learning_rate"],
        "validation_split": params["validation_split"],
    }
    with tempfile.TemporaryDirectory(prefix="lstmgen-training-") as tmp:
        folder = Path(tmp)
        corpus = folder / "corpus.txt"
        corpus.write_text(text, encoding="utf-8")
        base = params.get("base_model")
        resume = None if base is None else _base_folder(catalog, settings, base, folder / "base")
        if resume is None:
            overrides["layers"] = tuple(params["layers"])
        reporter = Reporter(
            store,
            training.id,
            worker,
            time.monotonic() + settings.training_time_limit_s,
            settings.training_progress_interval_s,
        )
        callback = ProgressCallback(reporter, params["epochs"])
        try:
            train(
                corpus, folder / "model", overrides, resume=resume, progress=False,
                callbacks=[callback],
            )  # fmt: skip
        except Stopped as stop:
            return stop.status, None if stop.status is JobStatus.CANCELED else stop.message
        except (TrainingError, ValueError) as error:
            return JobStatus.FAILED, str(error)
        if store.cancel_requested(training.id):
            return JobStatus.CANCELED, None
        try:
            publish_folder(
                catalog,
                training.name,
                folder / "model",
                owner=training.owner,
                description=f"trained by training {training.id}",
                limits=ArchiveLimits.from_settings(settings),
                max_vocab=settings.max_model_vocab,
            )
        except ArchiveError as error:
            return JobStatus.FAILED, str(error)
    return JobStatus.SUCCEEDED, None


def _base_folder(catalog: ModelCatalog, settings: Settings, name: str, into: Path) -> Path:
    """Return the folder of the model to continue: the model directory's, or an upload's."""
    local = Path(settings.model_dir) / name
    if local.is_dir():
        return local
    info = catalog.get(name)
    if info is None:
        raise TrainingError(name, "the base model no longer exists")
    archive = into.with_suffix(".zip")
    with archive.open("wb") as sink:
        if not catalog.read_blob(info.digest, sink):
            raise TrainingError(name, "the base model's files are gone")
    with zipfile.ZipFile(archive) as unzipped:
        unzipped.extractall(into)
    return into
