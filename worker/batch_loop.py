"""Continuous batching: one thread per model steps every job of this process together.

Jobs join the running batch at the next step and leave when they finish, are canceled or time
out. Partial output and progress reach Redis at least every `progress_interval_s` in one script
call, which also carries the cancel flags back; a writer thread makes that call while the batch
keeps stepping.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol, cast

import redis

from shared.engine.batch import Batch, Finished, FinishReason, Pacer
from shared.engine.model import LSTMModel, UnknownChars
from shared.engine.sampling import SamplingParams
from shared.jobs.lifecycle import Ended, Lifecycle
from shared.jobs.records import Final, FlushOutcome, JobError, JobStatus, Progress
from shared.webhooks.events import OUTPUT_EVENT_INTERVAL_S

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (job id, sample index)
Ending = tuple["ActiveJob", JobStatus, JobError | None]  # a job, how it ended, and why


class RunOutcome(StrEnum):
    """How one delivery of a job ended in this worker (what the task returns)."""

    SUCCEEDED = "succeeded"  # the first five: the final status this run recorded
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"
    RELEASED = "released"  # handed back to the queue (the worker is shutting down)
    GONE = "gone"  # no longer this worker's (ended elsewhere, redelivered, deleted)
    MISSING = "missing"  # the message names no model, and its job is gone
    NOTHING_QUEUED = "nothing_queued"  # no job of the model waits (they ended while queued)

    @classmethod
    def of(cls, status: JobStatus) -> RunOutcome:
        """Return the outcome of a run that recorded this final status."""
        return cls(status.value)


class LoopStore(Protocol):
    """What a model loop needs of the job store (`JobStore`, or a fake in unit tests)."""

    def flush(self, updates: Sequence[Progress]) -> list[FlushOutcome]:
        """Write new output and progress; answer whether each job goes on."""
        ...

    def finish(self, finals: Sequence[Final]) -> list[FlushOutcome]:
        """Record final states: OK, GONE where the job is no longer this attempt's, REBASE
        where the stored output is not as long as the update says."""
        ...

    def stored_lengths(self, job_id: str, n: int) -> list[int]:
        """Return how many characters of each output are stored."""
        ...

    def release(self, job_id: str, attempt: int, n: int) -> bool:
        """Put a running job back in the queue."""
        ...


@dataclass(eq=False)
class ActiveJob:
    """A claimed job in a model loop, and how much of its output Redis already has.

    A job that ran before (its worker died) resumes from its stored text: the text is fed
    after the seed and the random stream goes on at the step after it, so the job writes the
    text an uninterrupted run writes. A job with a `prefix` (`continue_from`) goes on from that
    text the same way; its own output is what comes after it.
    """

    job_id: str
    model: str
    attempt: int
    seed: str
    unknown: UnknownChars
    params: SamplingParams
    random_seed: int
    stored: list[int]  # characters of each sample's output already written
    time_limit_s: float
    created_at: float  # Unix time the job was submitted
    notify_output: bool  # emit throttled `output` events
    resumed: list[str] = field(default_factory=list)  # each output as stored at the claim
    prefix: list[str] = field(default_factory=list)  # each sample's text before its output
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: RunOutcome = RunOutcome.GONE  # how it ended, once `done` is set
    in_batch: bool = False
    finished: dict[int, Finished] = field(default_factory=dict)
    last_output_event: float = 0.0

    @property
    def n(self) -> int:
        """Return the number of samples."""
        return len(self.stored)

    def keys(self) -> list[Key]:
        """Return the batch keys of the samples."""
        return [(self.job_id, index) for index in range(self.n)]

    def offset(self, index: int) -> int:
        """Return where sample `index`'s output starts in its sequence's text."""
        return len(self.prefix[index]) if self.prefix else 0

    def end(self, outcome: RunOutcome) -> None:
        """Tell the waiting task thread how the job ended."""
        self.outcome = outcome
        self.done.set()


@dataclass
class _Ending:
    """A job that left the batch, until its final state is recorded."""

    job: ActiveJob
    status: JobStatus
    error: JobError | None
    reasons: tuple[str, ...]
    done: int
    texts: list[str]  # each sample's whole output

    def final(self) -> Final:
        """Return the final write: the output Redis lacks, and how the job ended."""
        stored = self.job.stored
        chunks = tuple(text[s:] for text, s in zip(self.texts, stored, strict=True))
        update = Progress(self.job.job_id, self.job.attempt, self.done, chunks, tuple(stored))
        return Final(update, self.status, self.reasons, self.error)


@dataclass
class _Write:
    """A progress flush in flight: the jobs and what it writes of each."""

    jobs: list[ActiveJob]
    updates: list[Progress]
    result: Future[list[FlushOutcome]]


class ModelLoop:
    """The batch of one model in this process, stepped by its own thread."""

    def __init__(
        self,
        name: str,
        load: Callable[[], LSTMModel],
        store: LoopStore,
        lifecycle: Lifecycle,
        *,
        capacity: int,
        flush_interval_s: float,
    ) -> None:
        self.name = name
        self._load = load
        self._store = store
        self._lifecycle = lifecycle
        self._capacity = capacity
        self._interval = flush_interval_s
        self._inbox: queue.SimpleQueue[ActiveJob] = queue.SimpleQueue()
        self._waiting: deque[ActiveJob] = deque()
        self._jobs: dict[str, ActiveJob] = {}
        self._unrecorded: list[_Ending] = []
        self._batch: Batch | None = None
        self._model: LSTMModel | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"batch-{name}", daemon=True)
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.peak = 0  # the most sequences stepped together (read by the heartbeat)
        self._pacer = Pacer()
        # A flush mostly waits for Redis: this thread makes the call while the batch steps.
        # One write at a time, and every job ending waits for it, so writes stay in order.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"flush-{name}")
        self._in_flight: _Write | None = None

    def start(self) -> None:
        """Start the loop thread (it loads the model first)."""
        self._thread.start()

    def submit(self, job: ActiveJob) -> None:
        """Hand a claimed job to the loop; it joins the batch at the next step."""
        self._inbox.put(job)

    def size(self) -> int:
        """Return how many sequences the batch holds now."""
        batch = self._batch
        return 0 if batch is None else len(batch)

    def alive(self) -> bool:
        """Return whether the loop thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Put every job back in the queue and stop the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._model = self._load()
            _warm_up(self._model)
            self._batch = Batch(self._model, capacity=self._capacity)
        except Exception as error:
            self.load_error = f"model {self.name!r} could not be loaded: {error}"
            log.exception("model %s could not be loaded", self.name)
        self.ready.set()
        next_flush = time.monotonic() + self._interval
        while not self._stopping.is_set():
            self._admit()
            self._step()
            self._settle(wait=False)
            now = time.monotonic()
            if now >= next_flush and self._in_flight is None:
                self._flush(now)
                next_flush = now + self._interval
        self._release_all()
        self._writer.shutdown()

    def _admit(self) -> None:
        """Move new jobs into the batch while there is room."""
        idle = self._batch is None or len(self._batch) == 0
        try:
            job = self._inbox.get(timeout=self._interval) if idle else self._inbox.get_nowait()
            while True:
                self._waiting.append(job)
                job = self._inbox.get_nowait()
        except queue.Empty:
            pass
        while self._waiting and self._has_room(self._waiting[0]):
            self._join(self._waiting.popleft())

    def _has_room(self, job: ActiveJob) -> bool:
        if self._batch is None or job.n > self._capacity:
            return True  # _join fails it
        return len(self._batch) + job.n <= self._capacity

    def _join(self, job: ActiveJob) -> None:
        previous = self._jobs.pop(job.job_id, None)
        if previous is not None:  # a redelivery reached this same process: the new attempt wins
            self._leave(previous)
            previous.end(RunOutcome.GONE)
        self._jobs[job.job_id] = job
        if self._batch is None or self._model is None:
            self._fail(job, JobError("model_error", self.load_error or "model unavailable"))
            return
        if job.n > self._capacity:
            message = f"{job.n} samples exceed the worker's batch of {self._capacity}"
            self._fail(job, JobError("invalid_input", message))
            return
        try:
            ids = self._model.encode_seed(job.seed, job.unknown)
            resumed = [self._add(job, index, ids) for index in range(job.n)]
        except (ValueError, KeyError) as error:
            self._fail(job, JobError("invalid_input", str(error)))
            return
        if any(resumed):
            log.info("job resumed at %s characters", resumed, extra={"job_id": job.job_id})
        log.debug(
            "job joined the batch of %s (%d sequences)",
            self.name,
            len(self._batch),
            extra={"job_id": job.job_id},
        )

    def _add(self, job: ActiveJob, index: int, seed_ids: list[int]) -> int:
        """Add one sample to the batch, after the text it generated before if it can tell
        the ids of that text; return how many of its output's characters it resumes after."""
        assert self._batch is not None and self._model is not None
        prefix = job.prefix[index] if job.prefix else ""
        resumed = job.resumed[index] if job.resumed else ""
        before = self._model.encode_generated(prefix + resumed)
        if before is None:
            if prefix:
                raise ValueError(f"model {self.name!r} cannot tell the ids of the text to continue")
            before = []  # generated again from the start: the same text, at the cost of time
        params = job.params
        if prefix:
            params = replace(params, length=len(prefix) + params.length)
        before = before[: params.length - 1]  # at least one step left
        self._batch.add(job.keys()[index], seed_ids, params, job.random_seed, index, before)
        job.in_batch = True
        return max(0, len(before) - len(prefix))

    def _step(self) -> None:
        batch = self._batch
        if batch is None or len(batch) == 0:
            return
        self.peak = max(self.peak, len(batch))
        try:
            finished = self._pacer.step(batch)
        except Exception:
            log.exception("batch step of %s failed; failing its jobs", self.name)
            for job in list(self._jobs.values()):
                if job.in_batch:
                    self._fail(job, JobError("internal", "the generation step failed"))
            return
        completed: list[ActiveJob] = []
        for item in finished:
            job_id, index = cast(Key, item.key)
            owner = self._jobs.get(job_id)
            if owner is not None:
                owner.finished[index] = item
                if len(owner.finished) == owner.n:
                    completed.append(owner)
        if completed:
            self._end_many([(job, JobStatus.SUCCEEDED, None) for job in completed])

    def _new_texts(self, job: ActiveJob) -> list[str]:
        """Return each sample's output after what Redis already has."""
        texts = []
        for index, (key, stored) in enumerate(zip(job.keys(), job.stored, strict=True)):
            start = job.offset(index) + stored
            if index in job.finished:
                texts.append(job.finished[index].text[start:])
            elif self._batch is not None and key in self._batch:
                texts.append(self._batch.text(key, start))
            else:
                texts.append("")
        return texts

    def _leave(self, job: ActiveJob) -> list[str]:
        """Take the job's samples out of the batch; return each one's whole output."""
        texts = []
        for index, key in enumerate(job.keys()):
            if index in job.finished:
                texts.append(job.finished[index].text[job.offset(index) :])
            elif self._batch is not None and key in self._batch:
                texts.append(self._batch.remove(key)[job.offset(index) :])
            else:
                texts.append("")  # it never joined
        job.in_batch = False
        return texts

    def _done(self, job: ActiveJob) -> int:
        total = 0
        for index, key in enumerate(job.keys()):
            item = job.finished.get(index)
            if item is not None:
                stopped = item.reason is FinishReason.STOP
                total += len(item.text) - job.offset(index) if stopped else job.params.length
            elif self._batch is not None and key in self._batch:
                total += self._batch.progress(key) - job.offset(index)
        return total

    def _fail(self, job: ActiveJob, error: JobError) -> None:
        log.warning("job failed: %s", error.message, extra={"job_id": job.job_id})
        self._end_many([(job, JobStatus.FAILED, error)])

    def _end_many(self, endings: list[Ending]) -> None:
        """Take jobs out of the batch and record how they ended."""
        self._settle(wait=True)  # the final output starts where the flushed output ends
        for job, status, error in endings:
            if self._jobs.get(job.job_id) is not job:
                continue  # that flush's answer ended it already (canceled or gone)
            done = self._done(job)  # before the samples leave the batch
            reasons: tuple[str, ...] = ()
            if status is JobStatus.SUCCEEDED:
                reasons = tuple(job.finished[i].reason.value for i in range(job.n))
            texts = self._leave(job)
            self._jobs.pop(job.job_id, None)
            self._unrecorded.append(_Ending(job, status, error, reasons, done, texts))
        self._record_endings()

    def _record_endings(self) -> None:
        if not self._unrecorded:
            return
        try:
            results = self._store.finish([ending.final() for ending in self._unrecorded])
        except redis.RedisError as error:
            log.warning(
                "could not record %d finished jobs, will retry: %s", len(self._unrecorded), error
            )
            return
        endings, self._unrecorded = self._unrecorded, []
        for ending, result in zip(endings, results, strict=True):
            job = ending.job
            if result is FlushOutcome.REBASE:
                self._rebase(job)  # write again from what Redis has, at the next flush
                self._unrecorded.append(ending)
                continue
            if result is FlushOutcome.OK:
                self._after_end(ending)
            job.end(RunOutcome.of(ending.status) if result is FlushOutcome.OK else RunOutcome.GONE)

    def _rebase(self, job: ActiveJob) -> None:
        """Take the stored lengths of a job's output as where its next write starts."""
        try:
            job.stored = self._store.stored_lengths(job.job_id, job.n)
        except redis.RedisError as error:  # the next write answers REBASE again
            log.warning("could not read stored lengths: %s", error, extra={"job_id": job.job_id})
            return
        log.warning(
            "stored output differs from what was written; writing again from %s",
            job.stored,
            extra={"job_id": job.job_id},
        )

    def _after_end(self, ending: _Ending) -> None:
        job = ending.job
        ended = Ended(
            job_id=job.job_id,
            model=job.model,
            status=ending.status,
            chars=ending.done,
            total_s=time.time() - job.created_at,
            generation_s=time.monotonic() - job.started,
        )
        self._lifecycle.finished(ended)

    def _flush(self, now: float) -> None:
        """End the jobs past their time limit, then start writing the new output of the rest."""
        self._record_endings()
        timed_out = [job for job in self._jobs.values() if now - job.started > job.time_limit_s]
        if timed_out:
            self._end_many([(job, JobStatus.TIMED_OUT, _time_limit(job)) for job in timed_out])
        jobs = list(self._jobs.values())
        if not jobs:
            return
        updates = [
            Progress(
                job.job_id,
                job.attempt,
                self._done(job),
                tuple(self._new_texts(job)),
                tuple(job.stored),
            )
            for job in jobs
        ]
        result = self._writer.submit(self._store.flush, updates)
        self._in_flight = _Write(jobs, updates, result)

    def _settle(self, *, wait: bool) -> None:
        """Take in the answer to the flush in flight (waiting for it if asked): cancels, gone."""
        write = self._in_flight
        if write is None or not (wait or write.result.done()):
            return
        self._in_flight = None
        try:
            results = write.result.result()
        except redis.RedisError as error:
            log.warning("progress flush failed, will retry: %s", error)
            return
        now = time.monotonic()
        canceled: list[Ending] = []
        for job, update, result in zip(write.jobs, write.updates, results, strict=True):
            if self._jobs.get(job.job_id) is not job:
                continue  # a redelivery of it replaced it meanwhile
            if result is FlushOutcome.REBASE:
                self._rebase(job)
                continue
            job.stored = [s + len(c) for s, c in zip(update.bases, update.chunks, strict=True)]
            if result is FlushOutcome.CANCEL:
                canceled.append((job, JobStatus.CANCELED, None))
            elif result is FlushOutcome.GONE:
                self._leave(job)
                self._jobs.pop(job.job_id, None)
                job.end(RunOutcome.GONE)
            elif any(update.chunks) and job.notify_output:
                self._output_event(job, now)
        if canceled:
            self._end_many(canceled)

    def _output_event(self, job: ActiveJob, now: float) -> None:
        if now - job.last_output_event >= OUTPUT_EVENT_INTERVAL_S:
            job.last_output_event = now
            self._lifecycle.output(job.job_id)

    def _release_all(self) -> None:
        """Put every job of this loop back in the queue (the worker is shutting down)."""
        self._settle(wait=True)
        self._record_endings()
        while True:
            try:
                self._waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        for job in [*self._jobs.values(), *self._waiting]:
            self._leave(job)
            try:
                self._store.release(job.job_id, job.attempt, job.n)
            except redis.RedisError as error:
                log.warning("could not release job: %s", error, extra={"job_id": job.job_id})
            job.end(RunOutcome.RELEASED)
        self._jobs.clear()
        self._waiting.clear()


def _time_limit(job: ActiveJob) -> JobError:
    return JobError("time_limit", f"ran longer than the {job.time_limit_s:g} s limit")


def _warm_up(model: LSTMModel) -> None:
    """Run one throwaway step so compiled kernels are ready before the first job."""
    batch = Batch(model, capacity=1)
    batch.add(
        "warm-up", model.encode(model.defaults.seed, "drop") or [0], SamplingParams(length=1), 0
    )
    batch.step()
