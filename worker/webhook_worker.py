"""Webhook delivery: the `lstmgen.deliver_webhook` task and the scheduler of due retries.

One task call makes one attempt. Retries are not Celery ETAs (a message held for hours by the
Redis broker is redelivered after its visibility timeout): a failed attempt puts the delivery
back in a Redis sorted set, and a small scheduler thread in each webhook worker moves the due
ones to the `lstmgen.webhooks` queue.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Final

import click
import httpx
import redis
from celery import Celery

from shared import logs, metrics
from shared.celery_app import WEBHOOK_QUEUE, WEBHOOK_TASK
from shared.jobs.records import JobTTLs
from shared.redis_connection import connect
from shared.settings import Settings
from shared.webhooks.deliveries import (
    Attempt,
    Delivery,
    DeliveryState,
    DeliveryStore,
    parse_due_member,
)
from shared.webhooks.signing import secret_key, signed_headers
from shared.webhooks.ssrf import WebhookURLError, make_webhook_client, warn_if_private_allowed

log = logging.getLogger(__name__)

JITTER: Final = 0.25  # a retry waits its scheduled delay times 1 + up to this fraction
MAX_RETRY_AFTER_S: Final = 6 * 3600.0  # a receiver's Retry-After is honoured up to this
CLAIM_LEASE_S: Final = 60.0  # a claimed retry not handed to Celery in this time is due again
SCHEDULER_POLL_S: Final = 1.0  # longest the scheduler sleeps without a nudge


class Verdict(StrEnum):
    """What one attempt means for the delivery."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"


@dataclass(frozen=True)
class Outcome:
    """One attempt and what it means."""

    attempt: Attempt
    verdict: Verdict
    retry_after_s: float | None = None  # what the receiver asked for (429/503)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Return the seconds a Retry-After header asks for (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def judge_status(status_code: int) -> tuple[Verdict, str | None]:
    """Return the verdict on an HTTP answer and, unless a success, why."""
    if 200 <= status_code < 300:
        return Verdict.SUCCEEDED, None
    if status_code == 410:
        return Verdict.GONE, "410 Gone: the receiver wants no more deliveries"
    if status_code == 429 or status_code >= 500:
        return Verdict.RETRY, f"HTTP {status_code}"
    if 300 <= status_code < 400:
        return Verdict.FAILED, f"HTTP {status_code}: redirects are not followed"
    return Verdict.FAILED, f"HTTP {status_code}"


def send_once(
    client: httpx.Client, delivery: Delivery, secrets: Sequence[str], timeout_s: float
) -> Outcome:
    """Make one signed POST of a delivery and judge the answer (never raises for HTTP trouble)."""
    body = delivery.payload.encode()
    started = time.time()
    clock = time.monotonic()
    headers = signed_headers(delivery.id, int(started), body, secrets)
    status_code: int | None = None
    retry_after: float | None = None
    try:
        with client.stream("POST", delivery.url, content=body, headers=headers) as response:
            status_code = response.status_code
            if status_code in (429, 503):
                retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        verdict, error = judge_status(status_code)
    except WebhookURLError as refused:
        verdict, error = Verdict.FAILED, f"refused at connect time: {refused}"
    except httpx.TimeoutException:
        verdict, error = Verdict.RETRY, f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as failure:
        verdict, error = Verdict.RETRY, f"{type(failure).__name__}: {failure}"
    latency_s = time.monotonic() - clock
    if verdict is Verdict.SUCCEEDED and latency_s > timeout_s:
        # Each phase has its own timeout; a receiver dripping its headers is still too slow.
        verdict, error = Verdict.RETRY, f"answered after {latency_s:.1f} s (limit {timeout_s:g} s)"
    attempt = Attempt(started, status_code, round(latency_s * 1000, 1), error)
    return Outcome(attempt, verdict, retry_after)


def retry_delay(
    round_attempts: int,
    delays: Sequence[float],
    retry_after_s: float | None,
    rng: random.Random,
) -> float | None:
    """Return the wait before the next attempt after `round_attempts` failed ones, or None."""
    if round_attempts > len(delays):
        return None
    # Jitter only lengthens the wait, so the schedule's span is a minimum.
    delay = delays[round_attempts - 1] * (1 + JITTER * rng.random())
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


def apply_outcome(
    delivery: Delivery,
    outcome: Outcome,
    delays: Sequence[float],
    rng: random.Random,
    now: float,
) -> Delivery:
    """Return the delivery with the attempt recorded and its new state."""
    attempts = (*delivery.attempts, outcome.attempt)
    if outcome.verdict is not Verdict.RETRY:
        state = {
            Verdict.SUCCEEDED: DeliveryState.SUCCEEDED,
            Verdict.FAILED: DeliveryState.FAILED,
            Verdict.GONE: DeliveryState.GONE,
        }[outcome.verdict]
        return replace(delivery, attempts=attempts, state=state, next_attempt_at=None)
    done = replace(delivery, attempts=attempts)
    delay = retry_delay(done.round_attempts, delays, outcome.retry_after_s, rng)
    if delay is None:
        return replace(done, state=DeliveryState.EXHAUSTED, next_attempt_at=None)
    return replace(done, next_attempt_at=now + delay)


def metric_outcome(delivery: Delivery) -> str:
    """Return the label an attempt is counted under in the metrics."""
    if delivery.state is DeliveryState.PENDING:
        return "retry"
    return "delivered" if delivery.state is DeliveryState.SUCCEEDED else delivery.state.value


@dataclass
class Deliverer:
    """Makes the attempts of deliveries and records them."""

    store: DeliveryStore
    client: httpx.Client
    secrets: Sequence[str]
    timeout_s: float
    delays: Sequence[float]
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_settings(cls, settings: Settings) -> Deliverer:
        """Connect to the settings' Redis and build the guarded HTTP client."""
        store = DeliveryStore(
            connect(settings.redis_url, settings.redis_sentinel_master),
            JobTTLs.from_settings(settings).final_s,
        )
        return cls(
            store=store,
            client=make_webhook_client(settings),
            secrets=tuple(settings.webhook_secrets),
            timeout_s=settings.webhook_timeout_s,
            delays=tuple(settings.retry_delays),
        )

    def deliver(self, job_id: str, delivery_id: str) -> Delivery | None:
        """Make the attempt a delivery is due for; return it updated, or None if not due."""
        before = self.store.get(job_id, delivery_id)
        if before is None or before.state is not DeliveryState.PENDING:
            return None
        if before.next_attempt_at is not None and before.next_attempt_at > time.time() + 1.0:
            # A duplicate message ahead of its time: make sure the real turn stays scheduled.
            self.store.schedule(job_id, delivery_id, before.next_attempt_at)
            return None
        if not self.store.lock(delivery_id, 3 * self.timeout_s + 30):
            return None
        try:
            outcome = send_once(self.client, before, self.secrets, self.timeout_s)
            after = apply_outcome(before, outcome, self.delays, self.rng, time.time())
            if not self.store.save(before, after):
                log.warning("delivery %s of job %s changed during an attempt", delivery_id, job_id)
                return None
        finally:
            self.store.unlock(delivery_id)
        if not before.attempts:
            self.store.advance(job_id, delivery_id, time.time())
        metrics.record_delivery(self.store.client, metric_outcome(after))
        log.info(
            "webhook %s %s of job %s: attempt %d %s",
            after.event,
            delivery_id,
            job_id,
            len(after.attempts),
            outcome.attempt.error or outcome.attempt.status_code,
            extra={"job_id": job_id},
        )
        return after


Publish = Callable[[str, str], None]


@dataclass
class Scheduler:
    """Moves due deliveries from the Redis sorted set to the webhook queue."""

    store: DeliveryStore
    publish: Publish
    poll_s: float = SCHEDULER_POLL_S
    lease_s: float = CLAIM_LEASE_S

    def run_once(self, now: float) -> int:
        """Hand every delivery due by `now` to the queue; return how many."""
        members, lease = self.store.claim_due(now, self.lease_s)
        for member in members:
            try:
                self.publish(*parse_due_member(member))
            except Exception:
                # Left claimed: it is due again when the lease ends.
                log.warning("could not queue webhook delivery %s", member, exc_info=True)
                continue
            self.store.release(member, lease)
        return len(members)

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set, sleeping until the next due time or a nudge."""
        while not stop.is_set():
            try:
                if self.run_once(time.time()):
                    continue
                next_due = self.store.next_due()
                wait = self.poll_s if next_due is None else next_due - time.time()
                if wait > 0:
                    self.store.wait_for_wake(min(wait, self.poll_s))
            except redis.RedisError:
                log.warning("webhook scheduler: Redis unavailable, retrying", exc_info=True)
                stop.wait(self.poll_s)


_deliverer: Deliverer | None = None
_deliverer_lock = threading.Lock()


def deliverer(settings: Settings) -> Deliverer:
    """Return this process's Deliverer, made on first use."""
    global _deliverer
    with _deliverer_lock:
        if _deliverer is None:
            _deliverer = Deliverer.from_settings(settings)
        return _deliverer


def register_webhook_task(app: Celery, settings: Settings) -> None:
    """Register `lstmgen.deliver_webhook` on the app: one attempt per call."""

    @app.task(name=WEBHOOK_TASK, queue=WEBHOOK_QUEUE, ignore_result=True)  # type: ignore[untyped-decorator]
    def deliver_webhook(job_id: str, delivery_id: str) -> None:
        """Make one attempt of a webhook delivery."""
        deliverer(settings).deliver(job_id, delivery_id)


@dataclass
class SchedulerThread:
    """The scheduler loop on a daemon thread, stopped with the worker."""

    scheduler: Scheduler
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop."""
        self.thread = threading.Thread(
            target=self.scheduler.run,
            args=(self.stop_event,),
            name="webhook-scheduler",
            daemon=True,
        )
        self.thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and wait for it."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout_s)


def start_scheduler(app: Celery, settings: Settings) -> SchedulerThread:
    """Start the due-retry scheduler of a webhook worker process."""

    def publish(job_id: str, delivery_id: str) -> None:
        app.send_task(WEBHOOK_TASK, args=[job_id, delivery_id], queue=WEBHOOK_QUEUE)

    store = deliverer(settings).store
    running = SchedulerThread(Scheduler(store, publish))
    running.start()
    logs.announce("webhook worker up: webhook scheduler started")
    return running


class WebhookRole:
    """The webhook side of a worker process: the delivery task, `--webhooks`, the scheduler.

    `celery -A worker.celery_worker worker --webhooks` consumes only `lstmgen.webhooks` and
    runs the retry scheduler; so does any worker given `-Q lstmgen.webhooks`. The worker's
    entry module calls these methods from its Celery signals.
    """

    def __init__(self, app: Celery, settings: Settings) -> None:
        for secret in settings.webhook_secrets:
            secret_key(secret)  # a malformed secret stops the worker now, not at the first event
        self.app = app
        self.settings = settings
        self._scheduler: SchedulerThread | None = None
        register_webhook_task(app, settings)
        app.user_options["worker"].add(
            click.Option(
                ["--webhooks"],
                is_flag=True,
                default=False,
                help="Deliver webhooks: consume only the lstmgen.webhooks queue.",
            )
        )

    def select_queue(self, worker: Any) -> None:
        """Consume only the webhook queue when the worker was started with `--webhooks`."""
        if worker.options.get("webhooks"):
            worker.app.amqp.queues.select([WEBHOOK_QUEUE])

    def start(self, consumer: Any) -> None:
        """Start the retry scheduler if this worker consumes the webhook queue."""
        if WEBHOOK_QUEUE in (consumer.app.amqp.queues.consume_from or {}):
            warn_if_private_allowed(self.settings, log)
            if not self.settings.webhook_secrets:
                log.warning("no LSTMGEN_WEBHOOK_SECRETS: webhooks are sent unsigned")
            self._scheduler = start_scheduler(self.app, self.settings)

    def stop(self) -> None:
        """Stop the scheduler, if it runs."""
        if self._scheduler is not None:
            self._scheduler.stop()
