"""The per-process generation runtime: model loops, claiming jobs, heartbeats, and repairing
the queue: the jobs of workers whose heartbeat stopped, and those a lost write stranded."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import redis

from shared import logs, metrics
from shared.celery_app import renew_unacked
from shared.engine.sampling import SamplingParams
from shared.jobs.lifecycle import Ended, Lifecycle, service_lifecycle
from shared.jobs.records import Claim, ClaimOutcome, Job
from shared.jobs.store import JobStore
from shared.logs import bind_job
from shared.settings import Settings
from shared.webhooks.events import WebhookEvent
from worker import predictions
from worker.batch_loop import ActiveJob, ModelLoop, RunOutcome
from worker.models import DIRECTORY_VERSION, WorkerModels

log = logging.getLogger(__name__)

HEARTBEAT_MISSES = 3  # a worker silent for this many periods counts as down
LIMITED_RETRY_S = 0.25  # how often a message whose jobs' keys are all at their limit tries again
# Hands a lost job's broker message back to its queue: (job id, model, delivery tag).
Redeliver = Callable[[str, str, str], None]


class Runtime:
    """Everything one generation worker process holds: its model loops and its heartbeat."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        models: WorkerModels,
        lifecycle: Lifecycle | None = None,
        redeliver: Redeliver | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.models = models
        self.lifecycle = lifecycle or service_lifecycle(store, settings.base_url)
        self.redeliver = redeliver
        self.worker_id = "unstarted"
        self._started = threading.Event()
        self._loops: dict[str, ModelLoop] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._unacked: set[str] = set()  # delivery tags of the messages being worked on
        self._held: Counter[str] = Counter()  # the jobs this process claimed and holds
        self._busy = 0  # runs under way: one per slot taken
        self._free_before = False  # whether a slot was free at the last beat
        self._served: frozenset[str] = frozenset()
        self._uploads = False

    def start(self, worker_id: str, models: list[str], *, uploads: bool = False) -> None:
        """Load the served models, then announce the worker with a heartbeat.

        `worker_id` names this process alone (a restarted worker gets a new one), so that its
        predecessor's jobs count as lost. `uploads`: it serves the uploaded models too.
        """
        self.worker_id = worker_id
        self._served, self._uploads = frozenset(models), uploads
        loops = [self.loop_for(name) for name in models]
        for loop in loops:
            loop.ready.wait()
        try:
            self.models.publish_directory([loop.name for loop in loops if not loop.load_error])
        except redis.RedisError as error:
            log.warning("could not publish the models' info: %s", error)
        self._send_heartbeat()  # before any claim: a claimed job's worker is always alive
        self._started.set()
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._heartbeat.start()
        threading.Thread(
            target=predictions.serve,
            args=(self.store.client, models, self.models.get, self._stopping),
            kwargs={"uploads": uploads},
            name="predictions",
            daemon=True,
        ).start()
        logs.announce("generation worker %s up (models: %s)", worker_id, ", ".join(models))

    def begin_shutdown(self) -> None:
        """Stop taking jobs: the loops hand theirs back to the queue (safe in a signal handler)."""
        self._stopping.set()
        for loop in list(self._loops.values()):
            threading.Thread(target=loop.stop, daemon=True).start()

    def stop(self) -> None:
        """Stop every loop and withdraw the heartbeat."""
        self._stopping.set()
        for loop in list(self._loops.values()):
            loop.stop()
        with contextlib.suppress(redis.RedisError):  # else the heartbeat key just expires
            self.store.client.delete(metrics.WORKER_PREFIX + self.worker_id)

    def loop_for(self, model: str) -> ModelLoop:
        """Return the running loop of a model's current version, starting it (and loading the
        model) once; a replaced upload gets a loop of its own, the old one keeps its jobs."""
        version = self.models.version(model)
        key = _loop_key(model, version)
        with self._lock:
            loop = self._loops.get(key)
            if loop is None or (not loop.alive() and not self._stopping.is_set()):
                loop = ModelLoop(
                    model,
                    lambda: self.models.get(model, version),
                    self.store,
                    self.lifecycle,
                    capacity=self.settings.worker_slots * self.settings.max_n,
                    flush_interval_s=self.settings.progress_interval_s,
                )
                loop.start()
                self._loops[key] = loop
            return loop

    def run(
        self, job_id: str, model: str | None = None, delivery_tag: str | None = None
    ) -> RunOutcome:
        """Run the model's next job to its end in this process's batch; return how it ended.

        The message was sent for `job_id` (of `model`); the job it runs is the one that is
        next by fair share when it runs. While it runs, the heartbeat renews the message.
        """
        with self._lock:
            self._busy += 1
            if delivery_tag is not None:
                self._unacked.add(delivery_tag)
        try:
            return self._run(job_id, model, delivery_tag)
        finally:
            with self._lock:
                self._busy -= 1
                self._unacked.discard(delivery_tag or "")

    def _claim(self, model: str, delivery_tag: str | None) -> Claim | None:
        """Claim the model's next job, waiting while every key with jobs waiting is at its
        limit; None if the worker stops first."""
        while not self._started.wait(1.0):  # a message can come before start() is done
            if self._stopping.is_set():
                return None
        while not self._stopping.is_set():
            claim = self._claim_once(model, delivery_tag or "")
            if claim.outcome is not ClaimOutcome.LIMITED:
                return claim
            self._stopping.wait(LIMITED_RETRY_S)
        return None

    def _claim_once(self, model: str, delivery_tag: str) -> Claim:
        """Claim the model's next job, held by this process from the moment it is claimed."""
        claim = self.store.claim(model, self.worker_id, self.settings, delivery=delivery_tag)
        if claim.outcome is ClaimOutcome.CLAIMED:
            with self._lock:
                self._held[claim.job_id] += 1
        self._report_unrun(claim.ended)
        return claim

    def _run(self, hint: str, model: str | None, delivery_tag: str | None) -> RunOutcome:
        if self._stopping.is_set():
            return RunOutcome.RELEASED  # never claimed: the message goes back to the queue
        model = model or self.store.model_of(hint)
        if model is None:
            log.info("message of job %s names no model, and the job is gone", hint)
            return RunOutcome.MISSING
        claim = self._claim(model, delivery_tag)
        if claim is None:
            return RunOutcome.RELEASED
        if claim.outcome is ClaimOutcome.EMPTY:
            return RunOutcome.NOTHING_QUEUED
        return self._run_claimed(claim)

    def _run_claimed(self, claim: Claim) -> RunOutcome:
        """Run a job this process claimed to its end, then let go of it."""
        job_id = claim.job_id
        try:
            with bind_job(job_id):
                job = self.store.get(job_id)
                if job is None:
                    return RunOutcome.GONE
                self.lifecycle.started(job_id)
                active = self._active(job, claim, self.store.prefix(job_id))
                loop = self.loop_for(job.model)
                loop.submit(active)
                while not active.done.wait(1.0):
                    if not loop.alive() and not active.done.is_set():
                        log.error("the batch loop of %s died; its job goes back", job.model)
                        self.store.release(job_id, claim.attempt, job.n)
                        return RunOutcome.RELEASED
                if active.outcome in (RunOutcome.GONE, RunOutcome.RELEASED):
                    log.info("job left this worker: %s", active.outcome.value)  # not an end
                return active.outcome
        finally:
            with self._lock:
                self._held[job_id] -= 1
                if not self._held[job_id]:
                    del self._held[job_id]

    def _active(self, job: Job, claim: Claim, prefix: tuple[str, ...]) -> ActiveJob:
        spec = job.input
        params = SamplingParams(
            length=spec.length,
            temperature=spec.temperature,
            top_k=spec.top_k,
            top_p=spec.top_p,
            stop=spec.stop,
        )
        return ActiveJob(
            job_id=job.id,
            model=job.model,
            attempt=claim.attempt,
            seed=spec.seed,
            unknown=spec.unknown_chars,
            params=params,
            random_seed=job.random_seed,
            stored=[len(text) for text in job.outputs],
            resumed=list(job.outputs),
            prefix=list(prefix) or [""] * job.n,
            time_limit_s=self.settings.job_time_limit_s,
            created_at=job.created_at,
            notify_output=job.webhook is not None
            and WebhookEvent.OUTPUT in job.webhook_events_filter,
        )

    def _report_unrun(self, job_ids: tuple[str, ...]) -> None:
        """Report the jobs a claim ended instead of running (expired, or lost too often)."""
        for job_id in job_ids:
            with bind_job(job_id):
                job = self.store.get(job_id)
                if job is not None:
                    self.lifecycle.finished(Ended.unrun(job))

    def batches(self) -> dict[str, dict[str, int]]:
        """Return each model's batch size now and the largest it has been."""
        loops = list(self._loops.values())
        return {loop.name: {"size": loop.size(), "peak": loop.peak} for loop in loops}

    def _beat(self) -> None:
        """Until the worker stops: beat, renew running jobs' broker messages, requeue the jobs
        of lost workers, expire stale jobs."""
        period = self.settings.worker_heartbeat_s
        # Beating since (monotonic): the jobs of other workers count as lost only once this
        # one has beaten for a whole heartbeat lifetime, so that after an outage of Redis the
        # live workers have beaten again before anyone sweeps.
        beating_since: float | None = time.monotonic()
        while not self._stopping.is_set():
            beat = self._send_heartbeat()
            beating_since = (beating_since or time.monotonic()) if beat else None
            with self._lock:
                tags = list(self._unacked)
            try:
                renew_unacked(self.store.client, tags)
            except redis.RedisError as error:
                log.warning("could not renew %d broker messages: %s", len(tags), error)
            try:
                if beating_since and time.monotonic() - beating_since >= self._heartbeat_ttl():
                    self._requeue_lost()
                self._requeue_unheld()
                self._adopt_waiting()
            except redis.RedisError as error:
                log.warning("could not requeue the jobs of lost workers: %s", error)
            try:
                self._expire_stale()
                self._retire_old_versions()
            except redis.RedisError as error:
                log.warning("could not expire stale jobs: %s", error)
            self._stopping.wait(period)

    def _retire_old_versions(self) -> None:
        """Stop the idle loops of uploads replaced or deleted since (a job handed to one
        meanwhile goes back to the queue, for the current version)."""
        with self._lock:
            versioned = [(key, loop) for key, loop in self._loops.items() if "@" in key]
        for key, loop in versioned:
            if loop.size() or _loop_key(loop.name, self.models.version(loop.name)) == key:
                continue
            with self._lock:
                self._loops.pop(key, None)
            loop.stop()
            self.models.forget(key.partition("@")[2])
            log.info("batch loop of %s stopped: that version was replaced or deleted", key)

    def _heartbeat_ttl(self) -> float:
        return self.settings.worker_heartbeat_s * HEARTBEAT_MISSES

    def _send_heartbeat(self) -> bool:
        return metrics.heartbeat(
            self.store.client,
            self.worker_id,
            self._heartbeat_ttl(),
            self.batches(),
            uploads=self._uploads,
        )

    def _requeue_lost(self) -> None:
        """Requeue the running jobs of workers that missed HEARTBEAT_MISSES beats, and hand
        their broker messages back (the visibility timeout stays the last resort)."""
        self._redeliver(
            self.store.requeue_lost(metrics.WORKER_PREFIX), "its worker stopped beating"
        )

    def _requeue_unheld(self) -> None:
        """Requeue the jobs the store says this process runs and it does not: the write that
        ended one, or the claim that gave it to another attempt, was lost (a failover of Redis
        loses the writes its replica had not received yet). The next attempt resumes it."""
        with self._lock:
            held = set(self._held)
        grace = self._heartbeat_ttl()  # a claim's answer is on its way to the held set
        unheld = self.store.requeue_unheld(self.worker_id, held, grace)
        self._redeliver(unheld, "the store had it running here after this worker let it go")

    def _redeliver(self, requeued: list[tuple[str, str]], why: str) -> None:
        for job_id, tag in requeued:
            with bind_job(job_id):
                job = self.store.get(job_id)
                log.warning("job requeued: %s", why)
                if job is not None and self.redeliver is not None:
                    self.redeliver(job_id, job.model, tag)

    def _adopt_waiting(self) -> None:
        """Claim jobs that have waited a heartbeat lifetime while this worker had a slot free
        for two beats in a row. A free slot takes a message within milliseconds, so such a job
        has lost its message (a failover can lose the write that sent it); should the message
        come after all, it finds nothing to run and is dropped."""
        with self._lock:
            free = self.settings.worker_slots - self._busy
            free_before, self._free_before = self._free_before, free > 0
        if free <= 0 or not free_before or self._stopping.is_set():
            return
        waiting = self.store.queued_before(self._heartbeat_ttl(), limit=50)
        for model in dict.fromkeys(model for _, model in waiting if self._serves(model)):
            while free > 0:
                claim = self._claim_once(model, "")
                if claim.outcome is not ClaimOutcome.CLAIMED:
                    break
                with bind_job(claim.job_id):
                    log.warning(
                        "job adopted: it waited in the queue with no message reaching a worker"
                    )
                free -= 1
                with self._lock:
                    self._busy += 1
                threading.Thread(
                    target=self._run_adopted, args=(claim,), name="adopted", daemon=True
                ).start()

    def _run_adopted(self, claim: Claim) -> None:
        try:
            self._run_claimed(claim)
        finally:
            with self._lock:
                self._busy -= 1

    def _serves(self, model: str) -> bool:
        """Return whether this process consumes the queue of `model`'s jobs."""
        if model in self._served:
            return True
        return (
            self._uploads and self.models.uploaded(model) and self.models.version(model) is not None
        )

    def _expire_stale(self) -> None:
        for job_id in self.store.expire_stale(self.settings.queue_ttl_s):
            with bind_job(job_id):
                job = self.store.get(job_id)
                if job is not None:
                    self.lifecycle.finished(Ended.unrun(job))


def _loop_key(model: str, version: str | None) -> str:
    """Return the key of a model version's loop: its name, with an upload's digest."""
    return model if version == DIRECTORY_VERSION else f"{model}@{version}"
