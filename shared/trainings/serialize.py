"""A training as the API, the CLI and webhooks show it."""

from __future__ import annotations

from typing import Any

from shared.jobs.serialize import isoformat
from shared.trainings.records import Training


def serialize_training(training: Training) -> dict[str, Any]:
    """Return a training as JSON-ready values."""
    return {
        "id": training.id,
        "status": training.status.value,
        "name": training.name,
        "params": training.params,
        "progress": {
            "epoch": training.progress.epoch,
            "epochs": training.progress.epochs,
            "step": training.progress.step,
            "steps": training.progress.steps,
        },
        "metrics": [
            {"epoch": m.epoch, "loss_bpc": m.loss_bpc, "val_loss_bpc": m.val_loss_bpc}
            for m in training.metrics
        ],
        "error": training.error,
        "attempts": training.attempts,
        "created_at": isoformat(training.created_at),
        "started_at": isoformat(training.started_at),
        "finished_at": isoformat(training.finished_at),
    }
