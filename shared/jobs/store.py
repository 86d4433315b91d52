"""The job store: job records in Redis, changed only by compare-and-set Lua scripts."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import redis

from shared.jobs import streams
from shared.jobs.keys import (
    QUEUED_KEY,
    REPLICATED_KEY,
    RUNNING_KEY,
    bucket_key,
    events_key,
    idempotency_key,
    job_key,
    job_keys,
    output_key,
    owner_key,
    owner_queued_key,
    owner_running_key,
    prefix_key,
)
from shared.jobs.records import (
    CancelOutcome,
    Claim,
    ClaimOutcome,
    CreateOutcome,
    Final,
    FlushOutcome,
    Job,
    JobEvent,
    JobStatus,
    JobTTLs,
    NewJob,
    Progress,
)
from shared.jobs.scripts import load_scripts
from shared.jobs.serialize import job_from_hash, new_job_fields, output_event
from shared.redis_connection import connect
from shared.settings import Settings

LUA = Path(__file__).parent / "lua"


class JobStore:
    """Job records in Redis; every status change goes through a compare-and-set script."""

    def __init__(self, client: redis.Redis, ttls: JobTTLs) -> None:
        self.client = client
        self.ttls = ttls
        self._scripts = load_scripts(client, LUA)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        """Connect to the Redis of the settings."""
        client = connect(settings.redis_url, settings.redis_sentinel_master)
        return cls(client, JobTTLs.from_settings(settings))

    def create(
        self,
        job: NewJob,
        *,
        idempotency: str | None,
        max_queue_depth: int,
        owner_max_queued: int = 0,
    ) -> tuple[CreateOutcome, str]:
        """Store a queued job unless its id or Idempotency-Key exists, the queue is full or its
        owner has `owner_max_queued` jobs queued (0: no limit); it waits in its owner's fair
        queue of its model."""
        idem = idempotency_key(job.owner, idempotency) if idempotency else job_key(job.id)
        args: list[str | int] = [
            job.id,
            "1" if idempotency else "0",
            self.ttls.active_s + self.ttls.final_s,
            max_queue_depth,
            self.ttls.active_s,
            job_key(""),
            json.dumps(list(job.prefix), ensure_ascii=False) if job.prefix else "",
            owner_max_queued,
        ]
        for name, value in new_job_fields(job).items():
            args += [name, value]
        prefix = prefix_key(job.id) if job.prefix else job_key(job.id)
        keys = [job_key(job.id), events_key(job.id), QUEUED_KEY, owner_key(job.owner), idem, prefix]
        outcome, job_id = self._scripts["create"](keys=keys, args=args)
        return CreateOutcome(outcome), str(job_id)

    def get(self, job_id: str) -> Job | None:
        """Return a job with its output so far, or None if there is no such job.

        One round trip for a job of one sample (most jobs, polled often): its record and first
        output are read together, and a job of more samples is read again with all of them.
        """
        found = self._read([(job_id, 1)])
        if found and found[0].n > 1:
            found = self._read([(job_id, found[0].n)])
        return found[0] if found else None

    def model_of(self, job_id: str) -> str | None:
        """Return the model of a job, or None if there is no such job."""
        value = self.client.hget(job_key(job_id), "model")
        return None if value is None else str(value)

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
        return self._read(
            [(job_id, int(n)) for job_id, n in zip(job_ids, counts, strict=True) if n]
        )

    def _read(self, wanted: Sequence[tuple[str, int]]) -> list[Job]:
        """Return the jobs that exist among (id, samples to read), in one transaction."""
        pipe = self.client.pipeline(transaction=True)
        for job_id, n in wanted:
            pipe.hgetall(job_key(job_id))
            pipe.mget([output_key(job_id, i) for i in range(n)])
        replies = pipe.execute()
        jobs = []
        for index in range(len(wanted)):
            record, outputs = replies[2 * index], replies[2 * index + 1]
            if record:
                jobs.append(job_from_hash(record, outputs))
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

    def cancel(self, job_id: str, n: int) -> CancelOutcome:
        """Cancel a queued job now or ask its worker to stop a running one."""
        reply = self._scripts["cancel"](keys=job_keys(job_id, n), args=[self.ttls.final_s])
        return CancelOutcome(str(reply))

    def take_submission(self, owner: str, rate: float, burst: int) -> float:
        """Take a token of the owner's submission bucket: 0 if one was there, else the seconds
        until one will be (a rate of 0: no limit)."""
        if rate <= 0:
            return 0.0
        return float(self._scripts["rate"](keys=[bucket_key(owner)], args=[rate, burst]))

    def usage(self, owner: str) -> tuple[int, int, int]:
        """Return an owner's jobs queued, jobs running and samples running."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zcard(owner_queued_key(owner))
        pipe.hvals(owner_running_key(owner))
        queued, running = pipe.execute()
        return int(queued), len(running), sum(int(n) for n in running)

    def queue_depth(self) -> int:
        """Return how many jobs wait to start."""
        return int(self.client.zcard(QUEUED_KEY))

    def read_events(
        self, job_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 500
    ) -> list[JobEvent]:
        """Return the events after stream id `after`, waiting up to `block_ms` for some."""
        return streams.read_events(
            self.client, events_key(job_id), after, block_ms=block_ms, count=count
        )

    def last_event(self, job_id: str) -> JobEvent | None:
        """Return the newest event of a job's stream, if any."""
        return streams.last_event(self.client, events_key(job_id))

    def prefix(self, job_id: str) -> tuple[str, ...]:
        """Return the text each sample of a job continues (empty without `continue_from`)."""
        value = self.client.get(prefix_key(job_id))
        return () if value is None else tuple(json.loads(value))

    def claim(self, model: str, worker: str, settings: Settings, *, delivery: str = "") -> Claim:
        """Move the next job of a model, chosen fairly between owners, to running for this
        worker (see lua/claim.lua).

        `delivery` is the broker message's tag, kept so that a sweep can hand the message of a
        dead worker's job back to the queue. Every job has a message, but a message does not
        name the job it starts: whichever job is next when a slot frees is.
        """
        args: list[str | int | float] = [
            model,
            worker,
            settings.max_attempts,
            settings.queue_ttl_s,
            self.ttls.active_s,
            self.ttls.final_s,
            delivery,
        ]
        reply = self._scripts["claim"](keys=[], args=args)
        outcome = ClaimOutcome(str(reply[0]))
        ended = tuple(str(job_id) for job_id in reply[3:])
        if outcome is ClaimOutcome.CLAIMED:
            return Claim(outcome, str(reply[1]), int(reply[2]), ended)
        return Claim(outcome, ended=ended)

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
            rows.append([str(update.attempt), str(update.done), *_chunk_args(update)])
        payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
        replies = self._scripts["flush"](keys=keys, args=[payload])
        return [FlushOutcome(str(reply)) for reply in replies]

    def finish(self, finals: Sequence[Final]) -> list[FlushOutcome]:
        """Record final states of running jobs with their last output: OK, or GONE where not
        ours, or REBASE where the stored output is not as long as the update says."""
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
            args += _chunk_args(update)
            keys = job_keys(update.job_id, len(update.chunks))
            self._scripts["finish"](keys=keys, args=args, client=pipe)
        return [FlushOutcome(str(reply)) for reply in pipe.execute()]

    def stored_lengths(self, job_id: str, n: int) -> list[int]:
        """Return how many characters of each output of a job are stored."""
        values = self.client.hmget(job_key(job_id), [f"len:{i}" for i in range(n)])
        return [int(value or 0) for value in values]

    def release(self, job_id: str, attempt: int, n: int) -> bool:
        """Put a running job back in the queue, uncounted (its worker is shutting down)."""
        return str(self._scripts["release"](keys=job_keys(job_id, n), args=[attempt])) == "ok"

    def requeue_lost(self, beats: str, limit: int = 500) -> list[tuple[str, str]]:
        """Put back in the queue the running jobs whose worker's heartbeat (a key under the
        prefix `beats`) is gone; return each one's id and broker delivery tag ('' if unknown)."""
        owned = self._running(limit)
        workers = sorted({worker for _, worker, _, _ in owned})
        alive = dict(zip(workers, self.client.mget([beats + w for w in workers]), strict=True))
        return self._requeue([row for row in owned if alive[row[1]] is None])

    def requeue_unheld(
        self, worker: str, held: Collection[str], grace_s: float, limit: int = 500
    ) -> list[tuple[str, str]]:
        """Put back in the queue the jobs the store says `worker` runs, claimed over `grace_s`
        ago, that it does not hold: the writes that ended them (or gave them to another
        attempt) were acknowledged and then lost, as a failover of Redis can lose its last
        writes. Their output stays: the next attempt resumes it. `held` must be read before
        this call. Return each job's id and broker delivery tag ('' if unknown)."""
        owned = self._running(limit, claimed_before=self._now() - grace_s)
        return self._requeue([row for row in owned if row[1] == worker and row[0] not in held])

    def queued_before(self, waited_s: float, limit: int = 100) -> list[tuple[str, str]]:
        """Return the oldest jobs queued over `waited_s` ago: each one's id and model."""
        oldest = self._now() - waited_s
        ids: list[str] = self.client.zrangebyscore(  # type: ignore[assignment]
            QUEUED_KEY, "-inf", oldest, start=0, num=limit
        )
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(job_key(job_id), "model")
        models = pipe.execute()
        return [(job_id, model) for job_id, model in zip(ids, models, strict=True) if model]

    def _now(self) -> float:
        """Return the time on the Redis server, the clock the scripts stamp records with."""
        seconds, micros = self.client.time()
        return float(seconds) + micros / 1e6

    def _running(
        self, limit: int, claimed_before: float | None = None
    ) -> list[tuple[str, str, str, str]]:
        """Return the running jobs (id, worker, attempt, n), claimed before a time if given,
        and drop ended ones from the index of running jobs."""
        top: float | str = "+inf" if claimed_before is None else claimed_before
        running: list[str] = self.client.zrangebyscore(  # type: ignore[assignment]
            RUNNING_KEY, "-inf", top, start=0, num=limit
        )
        if not running:
            return []
        pipe = self.client.pipeline(transaction=False)
        for job_id in running:
            pipe.hmget(job_key(job_id), ["status", "worker", "attempts", "n"])
        states = pipe.execute()
        stale = [job_id for job_id, s in zip(running, states, strict=True) if s[0] != "running"]
        if stale:
            self.client.zrem(RUNNING_KEY, *stale)
        return [
            (job_id, worker, attempts, n)
            for job_id, (status, worker, attempts, n) in zip(running, states, strict=True)
            if status == "running" and worker
        ]

    def _requeue(self, rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str]]:
        requeued = []
        for job_id, worker, attempts, n in rows:
            keys = job_keys(job_id, int(n))
            tag = self._scripts["requeue"](keys=keys, args=[attempts, worker])
            if tag is not None:
                requeued.append((job_id, str(tag)))
        return requeued

    def replicated(self, replicas: int, timeout_s: float) -> int:
        """Wait until `replicas` replicas hold every write the primary has applied so far
        (those of the caller's request among them); return how many do.

        WAIT covers the writes of its own connection, so a write goes first on the same
        connection: the primary applies writes in one order, and a replica that holds this
        one holds every write applied before it, whichever client made them.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(REPLICATED_KEY)
        pipe.wait(replicas, max(1, int(timeout_s * 1000)))
        _, acknowledged = pipe.execute()
        return int(acknowledged)

    def abandon(self, job_id: str, n: int, error_type: str, message: str) -> bool:
        """End `failed` a job that is still queued (it could not be enqueued)."""
        args: list[str | int] = [self.ttls.final_s, error_type, message]
        return str(self._scripts["abandon"](keys=job_keys(job_id, n), args=args)) == "failed"

    def expire_stale(self, queue_ttl_s: float, limit: int = 100) -> list[str]:
        """End `expired` the jobs queued longer than the TTL; return their ids."""
        oldest = self._now() - queue_ttl_s
        expired = []
        stale: list[str] = self.client.zrangebyscore(  # type: ignore[assignment]
            QUEUED_KEY, "-inf", oldest, start=0, num=limit
        )
        for job_id in stale:
            n = self.client.hget(job_key(job_id), "n") or "1"
            args: list[str | float] = [queue_ttl_s, self.ttls.final_s, job_id]
            if str(self._scripts["expire"](keys=job_keys(job_id, int(n)), args=args)) == "expired":
                expired.append(str(job_id))
        return expired


def _chunk_args(update: Progress) -> list[str | int]:
    args: list[str | int] = []
    for index, (chunk, base) in enumerate(zip(update.chunks, update.bases, strict=True)):
        event = output_event(index, chunk, update.done) if chunk else ""
        args += [chunk, event, str(base), str(base + len(chunk))]
    return args
