"""The training record: what was asked, where the run is, what it measured."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from shared.jobs.records import JobStatus


@dataclass(frozen=True)
class Progress:
    """Where a running training is: epoch and step of their totals."""

    epoch: int = 0  # epochs finished
    epochs: int = 0
    step: int = 0  # steps finished in the current epoch
    steps: int = 0


@dataclass(frozen=True)
class EpochMetrics:
    """The losses of one finished epoch, in bits per character."""

    epoch: int
    loss_bpc: float
    val_loss_bpc: float | None


@dataclass(frozen=True)
class Training:
    """One training job; `params` are the validated request without the corpus text."""

    id: str
    owner: str
    name: str
    params: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    progress: Progress = field(default_factory=Progress)
    metrics: tuple[EpochMetrics, ...] = ()
    error: str | None = None
    webhook: str | None = None
    worker: str | None = None  # the training worker process running it
    attempts: int = 0  # times a training worker took it up

    def to_json(self) -> str:
        """Return the record as stored."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Training:
        """Read a stored record."""
        data = json.loads(text)
        return cls(
            **{
                **data,
                "status": JobStatus(data["status"]),
                "progress": Progress(**data["progress"]),
                "metrics": tuple(EpochMetrics(**m) for m in data["metrics"]),
            }
        )

    def with_changes(self, **changes: Any) -> Training:
        """Return a copy with some fields changed."""
        return replace(self, **changes)
