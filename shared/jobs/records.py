"""Job records: statuses and outcomes, the job as stored, and what a job asks for."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: the client reads these enums without the engine's imports
    from shared.engine.model import UnknownChars
    from shared.settings import Settings

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class JobStatus(StrEnum):
    """Where a job is in its life; the last five are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        """Return whether the job can no longer change."""
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class CreateOutcome(StrEnum):
    """What `JobStore.create` did."""

    CREATED = "created"
    EXISTING = "existing"  # the Idempotency-Key was used before: its job is returned
    EXISTS = "exists"  # a job with this id exists already
    FULL = "full"  # the queue is at its configured depth
    OWNER_FULL = "owner_full"  # the caller's key has as many jobs queued as it may


class CancelOutcome(StrEnum):
    """What `JobStore.cancel` did."""

    CANCELED = "canceled"  # it was queued: it ended now
    REQUESTED = "requested"  # it is running: its worker stops it at its next flush
    MISSING = "missing"
    FINAL = "final"  # it had ended already


class ClaimOutcome(StrEnum):
    """What `JobStore.claim` found when a slot of a worker freed."""

    CLAIMED = "claimed"
    LIMITED = "limited"  # jobs wait, but every key that has some runs as many as it may
    EMPTY = "empty"  # no job of the model waits


class FlushOutcome(StrEnum):
    """What the store answered to a progress flush or a final write."""

    OK = "ok"
    CANCEL = "cancel"  # a cancel was requested: stop and record `canceled`
    GONE = "gone"  # the job is no longer ours (ended, redelivered elsewhere, deleted)
    REBASE = "rebase"  # the stored output is not as long as the writer thought: nothing was
    # written; read the stored lengths and write again from there


@dataclass(frozen=True)
class JobTTLs:
    """How long job keys live: `active_s` while queued/running, `final_s` after the end."""

    active_s: int
    final_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> JobTTLs:
        """Derive the TTLs from the lifecycle settings (the one place they are set)."""
        longest_life = settings.queue_ttl_s + settings.max_attempts * settings.visibility_timeout_s
        return cls(
            active_s=math.ceil(longest_life + settings.retention_s),
            final_s=settings.retention_s,
        )


@dataclass(frozen=True)
class JobError:
    """Why a job did not succeed."""

    type: str
    message: str


@dataclass(frozen=True)
class JobInput:
    """What a job asks for, as the API accepted it (defaults filled in) and a worker runs it."""

    model: str
    seed: str  # empty: the model's default seed
    length: int  # characters per sample
    temperature: float  # 0: greedy
    top_k: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    n: int = 1  # samples
    unknown_chars: UnknownChars = "error"
    random_seed: int | None = None  # as requested; `Job.random_seed` is the one used
    continue_from: str | None = None  # the job whose text (and random stream) this one goes on
    priority: str = "normal"  # high, normal or low: the order among the same key's jobs

    def to_json(self) -> dict[str, Any]:
        """Return the input as the API shows it and the record stores it."""
        return {
            "model": self.model,
            "seed": self.seed,
            "length": self.length,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "stop": list(self.stop),
            "n": self.n,
            "unknown_chars": self.unknown_chars,
            "random_seed": self.random_seed,
            "continue_from": self.continue_from,
            "priority": self.priority,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobInput:
        """Read an input written by `to_json`."""
        return cls(**{**data, "stop": tuple(data["stop"])})


@dataclass(frozen=True)
class Job:
    """A job record as stored, with its output so far."""

    id: str
    owner: str
    status: JobStatus
    model: str
    input: JobInput
    n: int
    random_seed: int
    outputs: tuple[str, ...]
    done: int
    total: int
    attempts: int
    created_at: float
    started_at: float | None
    completed_at: float | None
    expires_at: float | None
    error: JobError | None = None
    finish_reasons: tuple[str, ...] = ()
    webhook: str | None = None
    webhook_events_filter: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    worker: str | None = None
    cancel_requested: bool = False


@dataclass(frozen=True)
class NewJob:
    """What the API stores when it accepts a job."""

    id: str
    owner: str
    model: str
    input: JobInput
    n: int
    random_seed: int
    total: int
    fingerprint: str
    webhook: str | None = None
    webhook_events_filter: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    prefix: tuple[str, ...] = ()  # with `continue_from`: the text each sample goes on from
    rank: int = 1  # the priority's rank: 0 high, 1 normal, 2 low
    weight: float = 1.0  # the owner's share of freed slots, as its limits say
    max_running: int = 0  # the owner's limit of running samples (0: none)


@dataclass(frozen=True)
class Claim:
    """What a freed slot got: a job and its attempt number, or why none; and the jobs the claim
    ended instead of running them (expired in the queue, or lost too often)."""

    outcome: ClaimOutcome
    job_id: str = ""
    attempt: int = 0
    ended: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event stream."""

    id: str
    event: str
    data: str


@dataclass(frozen=True)
class Progress:
    """New output of one running job, to be written in a flush."""

    job_id: str
    attempt: int
    done: int
    chunks: tuple[str, ...]  # new text per output since the last flush
    bases: tuple[int, ...]  # characters of each output stored before the chunk


@dataclass(frozen=True)
class Final:
    """The end of a running job: its last output and how it ended."""

    update: Progress
    status: JobStatus
    finish_reasons: tuple[str, ...] = ()
    error: JobError | None = None


def new_job_id() -> str:
    """Return a fresh random job id."""
    return uuid.uuid4().hex


def fingerprint(payload: dict[str, Any]) -> str:
    """Return a stable hash of a create request, to tell a retry from a different request."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
