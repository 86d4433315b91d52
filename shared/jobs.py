"""Job records in Redis: the status Enum, the record, its serializer, and the store.

Key layout (prefix `lstmgen:`):
- `job:{id}`               hash: the record (status, input, progress, timestamps, attempts, ...)
- `job:{id}:events`        stream: `status`, `output` and `done` events (SSE ids are stream ids)
- `job:{id}:out:{i}`       string: output of sample i, appended as it is generated
- `jobs:queued`            sorted set: queued job ids by enqueue time (queue depth, expiry)
- `owner:{owner}:jobs`     sorted set: job ids by creation time, per API key (listing)
- `idem:{owner}:{sha256}`  string: the job id created with that Idempotency-Key
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis

from shared import job_scripts
from shared.settings import Settings

PREFIX = "lstmgen:"
QUEUED_KEY = PREFIX + "jobs:queued"
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


class ClaimOutcome(StrEnum):
    """What `JobStore.claim` found when a worker picked a job up."""

    CLAIMED = "claimed"
    MISSING = "missing"
    CANCELED = "canceled"
    EXPIRED = "expired"
    FAILED = "failed"
    FINAL = "final"  # it had already ended (a duplicate delivery)


class FlushOutcome(StrEnum):
    """What the store answered to a progress flush."""

    OK = "ok"
    CANCEL = "cancel"  # a cancel was requested: stop and record `canceled`
    GONE = "gone"  # the job is no longer ours (ended, redelivered elsewhere, deleted)


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
class Job:
    """A job record as stored, with its output so far."""

    id: str
    owner: str
    status: JobStatus
    model: str
    input: dict[str, Any]
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
    input: dict[str, Any]
    n: int
    random_seed: int
    total: int
    fingerprint: str
    webhook: str | None = None
    webhook_events_filter: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A worker's claim on a job: the attempt number and what is already stored per output."""

    outcome: ClaimOutcome
    attempt: int = 0
    stored: tuple[int, ...] = ()
    final_status: JobStatus | None = None  # with FINAL: the status the job already had


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


def owner_of(api_key: str | None) -> str:
    """Return the owner id of an API key (a hash, so keys are never stored)."""
    if api_key is None:
        return "public"
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def fingerprint(payload: dict[str, Any]) -> str:
    """Return a stable hash of a create request, to tell a retry from a different request."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def job_key(job_id: str) -> str:
    """Return the key of a job's record hash."""
    return f"{PREFIX}job:{job_id}"


def events_key(job_id: str) -> str:
    """Return the key of a job's event stream."""
    return f"{PREFIX}job:{job_id}:events"


def output_key(job_id: str, index: int) -> str:
    """Return the key of output `index` of a job."""
    return f"{PREFIX}job:{job_id}:out:{index}"


def owner_key(owner: str) -> str:
    """Return the key of an owner's job index."""
    return f"{PREFIX}owner:{owner}:jobs"


def idempotency_key(owner: str, key: str) -> str:
    """Return the Redis key that maps an owner's Idempotency-Key to its job."""
    return f"{PREFIX}idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"


def job_keys(job_id: str, n: int) -> list[str]:
    """Return the KEYS of the per-job scripts: hash, events, queued set, outputs."""
    return [job_key(job_id), events_key(job_id), QUEUED_KEY] + [
        output_key(job_id, i) for i in range(n)
    ]


def output_event(index: int, chunk: str, done: int) -> str:
    """Return the data of an `output` event."""
    event = {"stream": index, "text": chunk, "done": done}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def isoformat(timestamp: float | None) -> str | None:
    """Return a Unix time as an ISO 8601 UTC string (or None)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_metrics(job: Job) -> dict[str, float | None]:
    """Return queue, generation and total times and the generation speed of a job."""
    end = job.completed_at
    queue = None if job.started_at is None else job.started_at - job.created_at
    generation = None if job.started_at is None or end is None else end - job.started_at
    total = None if end is None else end - job.created_at
    speed = job.done / generation if generation else None
    return {
        "queue_time_s": _round(queue),
        "generation_time_s": _round(generation),
        "total_time_s": _round(total),
        "chars_per_s": _round(speed),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(max(value, 0.0), 4)


def serialize_job(job: Job, base_url: str) -> dict[str, Any]:
    """Return the job object as the API shows it (and webhooks send it)."""
    url = f"{base_url.rstrip('/')}/v1/jobs/{job.id}"
    single = job.n == 1
    reasons = list(job.finish_reasons) if job.finish_reasons else None
    return {
        "id": job.id,
        "status": job.status.value,
        "model": job.model,
        "input": job.input,
        "output": job.outputs[0] if single else list(job.outputs),
        "progress": {"done": job.done, "total": job.total},
        "error": None
        if job.error is None
        else {"type": job.error.type, "message": job.error.message},
        "finish_reason": (reasons[0] if single else reasons) if reasons else None,
        "random_seed": job.random_seed,
        "attempts": job.attempts,
        "metrics": job_metrics(job),
        "created_at": isoformat(job.created_at),
        "started_at": isoformat(job.started_at),
        "completed_at": isoformat(job.completed_at),
        "expires_at": isoformat(job.expires_at),
        "urls": {"get": url, "cancel": f"{url}/cancel", "stream": f"{url}/stream"},
        "webhook": job.webhook,
        "webhook_events_filter": list(job.webhook_events_filter),
        "metadata": job.metadata,
    }


def _float(value: str | None) -> float | None:
    return None if value is None or value == "" else float(value)


def _job_from_hash(record: dict[str, str], outputs: Sequence[str | None]) -> Job:
    error = None
    if record.get("error_type"):
        error = JobError(record["error_type"], record.get("error_message", ""))
    return Job(
        id=record["id"],
        owner=record["owner"],
        status=JobStatus(record["status"]),
        model=record["model"],
        input=json.loads(record["input"]),
        n=int(record["n"]),
        random_seed=int(record["random_seed"]),
        outputs=tuple(text or "" for text in outputs),
        done=int(record.get("done", "0")),
        total=int(record["total"]),
        attempts=int(record.get("attempts", "0")),
        created_at=float(record["created_at"]),
        started_at=_float(record.get("started_at")),
        completed_at=_float(record.get("completed_at")),
        expires_at=_float(record.get("expires_at")),
        error=error,
        finish_reasons=tuple(json.loads(record.get("finish_reason") or "[]")),
        webhook=record.get("webhook") or None,
        webhook_events_filter=tuple(json.loads(record.get("webhook_events_filter", "[]"))),
        metadata=json.loads(record.get("metadata", "{}")),
        worker=record.get("worker") or None,
        cancel_requested=record.get("cancel_requested") == "1",
    )


class JobStore:
    """Job records in Redis; every status change goes through a compare-and-set script."""

    def __init__(self, client: redis.Redis, ttls: JobTTLs) -> None:
        self.client = client
        self.ttls = ttls
        self._create = client.register_script(job_scripts.CREATE)
        self._claim = client.register_script(job_scripts.CLAIM)
        self._flush = client.register_script(job_scripts.FLUSH)
        self._finish = client.register_script(job_scripts.FINISH)
        self._cancel = client.register_script(job_scripts.CANCEL)
        self._release = client.register_script(job_scripts.RELEASE)
        self._expire = client.register_script(job_scripts.EXPIRE)
        self._abandon = client.register_script(job_scripts.ABANDON)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        """Connect to the Redis of the settings."""
        return cls(connect(settings.redis_url), JobTTLs.from_settings(settings))

    def create(
        self, job: NewJob, *, idempotency: str | None, max_queue_depth: int
    ) -> tuple[CreateOutcome, str]:
        """Store a queued job unless its id or Idempotency-Key exists or the queue is full."""
        idem = idempotency_key(job.owner, idempotency) if idempotency else job_key(job.id)
        fields = {
            "id": job.id,
            "owner": job.owner,
            "model": job.model,
            "input": json.dumps(job.input, ensure_ascii=False),
            "n": job.n,
            "random_seed": job.random_seed,
            "total": job.total,
            "fingerprint": job.fingerprint,
            "webhook": job.webhook or "",
            "webhook_events_filter": json.dumps(list(job.webhook_events_filter)),
            "metadata": json.dumps(job.metadata, ensure_ascii=False),
        }
        args: list[str | int] = [
            job.id,
            "1" if idempotency else "0",
            self.ttls.active_s + self.ttls.final_s,
            max_queue_depth,
            self.ttls.active_s,
            f"{PREFIX}job:",
        ]
        for name, value in fields.items():
            args += [name, str(value)]
        keys = [job_key(job.id), events_key(job.id), QUEUED_KEY, owner_key(job.owner), idem]
        outcome, job_id = self._create(keys=keys, args=args)
        return CreateOutcome(outcome), str(job_id)

    def get(self, job_id: str) -> Job | None:
        """Return a job with its output so far, or None if there is no such job."""
        found = self.get_many([job_id])
        return found[0] if found else None

    def fingerprint_of(self, job_id: str) -> str | None:
        """Return the request fingerprint a job was created with."""
        value = self.client.hget(job_key(job_id), "fingerprint")
        return None if value is None else str(value)

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        """Return the jobs that exist among `job_ids`, in order, each read consistently."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(job_key(job_id), "n")
        counts = pipe.execute()
        pipe = self.client.pipeline(transaction=True)
        present = [(job_id, int(n)) for job_id, n in zip(job_ids, counts, strict=True) if n]
        for job_id, n in present:
            pipe.hgetall(job_key(job_id))
            pipe.mget([output_key(job_id, i) for i in range(n)])
        replies = pipe.execute()
        jobs = []
        for index in range(len(present)):
            record, outputs = replies[2 * index], replies[2 * index + 1]
            if record:
                jobs.append(_job_from_hash(record, outputs))
        return jobs

    def owned(self, job_id: str, owner: str) -> Job | None:
        """Return a job if it exists and belongs to `owner` (others see no such job)."""
        job = self.get(job_id)
        return job if job is not None and job.owner == owner else None

    def list_jobs(
        self,
        owner: str,
        *,
        statuses: Iterable[JobStatus] = (),
        limit: int = 20,
        before: tuple[float, str] | None = None,
    ) -> tuple[list[Job], tuple[float, str] | None]:
        """Return an owner's jobs, newest first, and the cursor of the next page."""
        wanted = set(statuses)
        found: list[Job] = []
        cursor = before
        while len(found) < limit:
            page = self._index_page(owner, cursor, 4 * limit)
            if not page:
                return found, None
            jobs = {job.id: job for job in self.get_many([job_id for job_id, _ in page])}
            self._prune_index(owner, [job_id for job_id, _ in page if job_id not in jobs])
            for job_id, score in page:
                cursor = (score, job_id)
                job = jobs.get(job_id)
                if job is not None and (not wanted or job.status in wanted):
                    found.append(job)
                    if len(found) == limit:
                        return found, cursor
        return found, cursor

    def _index_page(
        self, owner: str, before: tuple[float, str] | None, count: int
    ) -> list[tuple[str, float]]:
        """Return up to `count` (id, score) entries strictly after the cursor, newest first."""
        top: float | str = "+inf" if before is None else before[0]
        rows: list[tuple[str, float]] = self.client.zrevrangebyscore(  # type: ignore[assignment]
            owner_key(owner), top, "-inf", start=0, num=count + 64, withscores=True
        )
        if before is not None:
            # Equal scores are ordered by id, descending: skip up to and including the cursor.
            rows = [(m, s) for m, s in rows if s < before[0] or m < before[1]]
        return [(str(member), float(score)) for member, score in rows[:count]]

    def _prune_index(self, owner: str, gone: list[str]) -> None:
        if gone:
            self.client.zrem(owner_key(owner), *gone)

    def cancel(self, job_id: str, n: int) -> str:
        """Cancel a queued job now or ask its worker to stop a running one."""
        return str(self._cancel(keys=job_keys(job_id, n), args=[self.ttls.final_s]))

    def queue_depth(self) -> int:
        """Return how many jobs wait to start."""
        return int(self.client.zcard(QUEUED_KEY))

    def read_events(
        self, job_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 500
    ) -> list[JobEvent]:
        """Return the events after stream id `after`, waiting up to `block_ms` for some."""
        reply: Any = self.client.xread({events_key(job_id): after}, count=count, block=block_ms)
        events: list[JobEvent] = []
        for _stream, entries in reply or []:
            for entry_id, entry in entries:
                events.append(JobEvent(str(entry_id), entry["event"], entry["data"]))
        return events

    def claim(self, job_id: str, worker: str, settings: Settings) -> Claim:
        """Move a job to running for this worker, or say why it must not run."""
        n = self.client.hget(job_key(job_id), "n")
        if n is None:
            return Claim(ClaimOutcome.MISSING)
        args: list[str | int | float] = [
            worker,
            settings.max_attempts,
            settings.queue_ttl_s,
            self.ttls.active_s,
            self.ttls.final_s,
        ]
        reply = self._claim(keys=job_keys(job_id, int(n)), args=args)
        outcome = ClaimOutcome(str(reply[0]))
        if outcome is ClaimOutcome.CLAIMED:
            return Claim(outcome, int(reply[1]), tuple(int(x) for x in reply[2:]))
        if outcome is ClaimOutcome.FINAL:
            return Claim(outcome, final_status=JobStatus(str(reply[1])))
        return Claim(outcome)

    def flush(self, updates: Sequence[Progress]) -> list[FlushOutcome]:
        """Write the new output and progress of running jobs in one round trip."""
        if not updates:
            return []
        # One script call for all jobs: a pipeline of one call per job costs several times
        # more CPU (client and server) when a worker flushes hundreds of jobs.
        keys: list[str] = []
        rows: list[list[str | int]] = []
        for update in updates:
            keys += job_keys(update.job_id, len(update.chunks))
            rows.append(
                [str(update.attempt), str(update.done), *_chunk_args(update.chunks, update.done)]
            )
        payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
        return [FlushOutcome(str(reply)) for reply in self._flush(keys=keys, args=[payload])]

    def finish(self, finals: Sequence[Final]) -> list[bool]:
        """Record final states of running jobs with their last output; False where not ours."""
        pipe = self.client.pipeline(transaction=False)
        for final in finals:
            update, error = final.update, final.error
            args: list[str | int] = [
                update.attempt,
                final.status.value,
                "" if error is None else error.type,
                "" if error is None else error.message,
                json.dumps(list(final.finish_reasons)),
                update.done,
                self.ttls.final_s,
            ]
            args += _chunk_args(update.chunks, update.done)
            keys = job_keys(update.job_id, len(update.chunks))
            self._finish(keys=keys, args=args, client=pipe)
        return [str(reply) == "ok" for reply in pipe.execute()]

    def release(self, job_id: str, attempt: int, n: int) -> bool:
        """Put a running job back in the queue, uncounted (its worker is shutting down)."""
        return str(self._release(keys=job_keys(job_id, n), args=[attempt])) == "ok"

    def abandon(self, job_id: str, n: int, error_type: str, message: str) -> bool:
        """End `failed` a job that is still queued (it could not be enqueued)."""
        args: list[str | int] = [self.ttls.final_s, error_type, message]
        return str(self._abandon(keys=job_keys(job_id, n), args=args)) == "failed"

    def expire_stale(self, queue_ttl_s: float, limit: int = 100) -> list[str]:
        """End `expired` the jobs queued longer than the TTL; return their ids."""
        seconds, micros = self.client.time()
        oldest = seconds + micros / 1e6 - queue_ttl_s
        expired = []
        stale: list[str] = self.client.zrangebyscore(  # type: ignore[assignment]
            QUEUED_KEY, "-inf", oldest, start=0, num=limit
        )
        for job_id in stale:
            n = self.client.hget(job_key(job_id), "n") or "1"
            args: list[str | float] = [queue_ttl_s, self.ttls.final_s, job_id]
            if str(self._expire(keys=job_keys(job_id, int(n)), args=args)) == "expired":
                expired.append(str(job_id))
        return expired


def _chunk_args(chunks: Sequence[str], done: int) -> list[str | int]:
    args: list[str | int] = []
    for index, chunk in enumerate(chunks):
        args += [chunk, output_event(index, chunk, done) if chunk else ""]
    return args


def connect(url: str) -> redis.Redis:
    """Return a Redis client for the job store (strings decoded, short connect timeout)."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=30.0,
        health_check_interval=15,
    )
