"""The per-process generation runtime: model loops, claiming jobs, heartbeats, and requeueing
the jobs of workers whose heartbeat stopped."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
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

    def start(self, worker_id: str, models: list[str]) -> None:
        """Load the served models, then announce the worker with a heartbeat.

        `worker_id` names this process alone (a restarted worker gets a new one), so that its
        predecessor's jobs count as lost.
        """
        self.worker_id = worker_id
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
            args=(self.store.client, models, self.models.registry.get, self._stopping),
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
        if delivery_tag is not None:
            with self._lock:
                self._unacked.add(delivery_tag)
        try:
            return self._run(job_id, model, delivery_tag)
        finally:
            with self._lock:
                self._unacked.discard(delivery_tag or "")

    def _claim(self, model: str, delivery_tag: str | None) -> Claim | None:
        """Claim the model's next job, waiting while every key with jobs waiting is at its
        limit; None if the worker stops first."""
        while not self._started.wait(1.0):  # a message can come before start() is done
            if self._stopping.is_set():
                return None
        while not self._stopping.is_set():
            claim = self.store.claim(
                model, self.worker_id, self.settings, delivery=delivery_tag or ""
            )
            self._report_unrun(claim.ended)
            if claim.outcome is not ClaimOutcome.LIMITED:
                return claim
            self._stopping.wait(LIMITED_RETRY_S)
        return None

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
        job_id = claim.job_id
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
            self.store.client, self.worker_id, self._heartbeat_ttl(), self.batches()
        )

    def _requeue_lost(self) -> None:
        """Requeue the running jobs of workers that missed HEARTBEAT_MISSES beats, and hand
        their broker messages back (the visibility timeout stays the last resort)."""
        for job_id, tag in self.store.requeue_lost(metrics.WORKER_PREFIX):
            with bind_job(job_id):
                job = self.store.get(job_id)
                log.warning("job requeued: its worker stopped beating")
                if job is not None and self.redeliver is not None:
                    self.redeliver(job_id, job.model, tag)

    def _expire_stale(self) -> None:
        for job_id in self.store.expire_stale(self.settings.queue_ttl_s):
            with bind_job(job_id):
                job = self.store.get(job_id)
                if job is not None:
                    self.lifecycle.finished(Ended.unrun(job))


def _loop_key(model: str, version: str | None) -> str:
    """Return the key of a model version's loop: its name, with an upload's digest."""
    return model if version == DIRECTORY_VERSION else f"{model}@{version}"
