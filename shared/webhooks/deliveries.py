"""Webhook delivery records in Redis: what was sent for a job, every attempt, what is due next.

Key layout (prefix `lstmgen:`, next to the job's own keys):
- `job:{id}:webhooks`        hash: delivery id -> the delivery as JSON (payload, attempts, state)
- `job:{id}:webhooks:line`   list: delivery ids waiting for their first attempt, oldest first;
                             only the head is due, so a job's events go out in order
- `job:{id}:webhooks:gate`   string that lives OUTPUT_EVENT_INTERVAL_S: an `output` event was
                             taken (the throttle)
- `webhooks:due`             sorted set: "{job id}/{delivery id}" by the time it is due
- `webhooks:wake`            list: nudges the scheduler when something is due now

The per-job keys live as long as the job record, and while a retry is pending, until the
retention has passed after it is due.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import redis

from shared.jobs.keys import PREFIX, job_key
from shared.jobs.records import Job
from shared.jobs.scripts import load_scripts
from shared.jobs.serialize import isoformat, serialize_job
from shared.jobs.store import JobStore
from shared.webhooks.events import OUTPUT_EVENT_INTERVAL_S, WebhookEvent, wants_event

log = logging.getLogger(__name__)

LUA = Path(__file__).parent / "lua"
DUE_KEY: Final = PREFIX + "webhooks:due"
WAKE_KEY: Final = PREFIX + "webhooks:wake"


class DeliveryState(StrEnum):
    """Where a delivery stands; every state but `pending` is final."""

    PENDING = "pending"  # waiting for an attempt (the first, or a retry)
    SUCCEEDED = "succeeded"  # a 2xx answer in time
    FAILED = "failed"  # an answer we do not retry (3xx, 4xx) or an address we refuse
    GONE = "gone"  # the receiver answered 410: it wants no more
    EXHAUSTED = "exhausted"  # every retry of the schedule failed


class DeliveryPendingError(Exception):
    """A delivery cannot be sent again while an attempt of it is still pending."""


@dataclass(frozen=True)
class Attempt:
    """One try at sending a delivery."""

    time: float  # Unix time the request started
    status_code: int | None  # None when there was no HTTP answer
    latency_ms: float
    error: str | None  # why it did not succeed, or None

    def public(self) -> dict[str, Any]:
        """Return the attempt as the API shows it."""
        return {
            "time": isoformat(self.time),
            "status_code": self.status_code,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


@dataclass(frozen=True)
class Delivery:
    """One event of one job, to be sent to the job's webhook until it succeeds or gives up."""

    id: str  # the `webhook-id` header: the same on every attempt
    job_id: str
    event: WebhookEvent
    url: str
    payload: str  # the JSON body, fixed when the event happened
    created_at: float
    state: DeliveryState = DeliveryState.PENDING
    attempts: tuple[Attempt, ...] = ()
    next_attempt_at: float | None = None
    round_start: int = 0  # attempts before the current round (a redelivery starts a new one)
    redeliveries: int = 0

    @property
    def round_attempts(self) -> int:
        """Return how many attempts the current round has made."""
        return len(self.attempts) - self.round_start

    def to_json(self) -> str:
        """Return the record as stored."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Delivery:
        """Read a stored record."""
        data = json.loads(text)
        data["event"] = WebhookEvent(data["event"])
        data["state"] = DeliveryState(data["state"])
        data["attempts"] = tuple(Attempt(**attempt) for attempt in data["attempts"])
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """Return the delivery as `GET /v1/jobs/{id}/deliveries` shows it."""
        return {
            "id": self.id,
            "event": self.event.value,
            "url": self.url,
            "state": self.state.value,
            "created_at": isoformat(self.created_at),
            "next_attempt_at": isoformat(self.next_attempt_at),
            "redeliveries": self.redeliveries,
            "attempts": [attempt.public() for attempt in self.attempts],
        }


def new_delivery_id(now: float) -> str:
    """Return a fresh `webhook-id`; ids of one job sort in creation order."""
    return f"msg_{int(now * 1e6):014x}{secrets.token_hex(6)}"


def deliveries_key(job_id: str) -> str:
    """Return the key of a job's delivery records."""
    return f"{job_key(job_id)}:webhooks"


def line_key(job_id: str) -> str:
    """Return the key of a job's deliveries waiting for their first attempt."""
    return f"{job_key(job_id)}:webhooks:line"


def gate_key(job_id: str) -> str:
    """Return the key that throttles a job's `output` events."""
    return f"{job_key(job_id)}:webhooks:gate"


def due_member(job_id: str, delivery_id: str) -> str:
    """Return how a delivery is named in the due set."""
    return f"{job_id}/{delivery_id}"


def parse_due_member(member: str) -> tuple[str, str]:
    """Return the (job id, delivery id) of a due-set member."""
    job_id, _, delivery_id = member.rpartition("/")
    return job_id, delivery_id


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class DeliveryStore:
    """Delivery records, the per-job line and the due set, over one Redis client."""

    client: redis.Redis
    keep_s: float  # keep records at least this long after a write (the job retention)
    _scripts: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._scripts = load_scripts(self.client, LUA)

    def _keep_ms(self, delivery: Delivery) -> int:
        """Return how long to keep a job's records: the retention past the next attempt."""
        wait = 0.0
        if delivery.state is DeliveryState.PENDING and delivery.next_attempt_at is not None:
            wait = max(0.0, delivery.next_attempt_at - time.time())
        return int(1000 * (self.keep_s + wait))

    def add(self, delivery: Delivery, *, throttle: bool) -> bool:
        """Queue a new delivery behind the job's earlier ones; False if throttled away."""
        job_id = delivery.job_id
        keys = [
            deliveries_key(job_id),
            line_key(job_id),
            gate_key(job_id),
            DUE_KEY,
            WAKE_KEY,
            job_key(job_id),
        ]
        args: list[str | int | float] = [
            delivery.id,
            delivery.to_json(),
            delivery.event.value,
            due_member(job_id, delivery.id),
            delivery.created_at,
            self._keep_ms(delivery),
            round(OUTPUT_EVENT_INTERVAL_S * 1000) if throttle else 0,
        ]
        return bool(self._scripts["add"](keys=keys, args=args))

    def get(self, job_id: str, delivery_id: str) -> Delivery | None:
        """Return one delivery of a job, or None."""
        raw = self.client.hget(deliveries_key(job_id), delivery_id)
        return None if raw is None else Delivery.from_json(_text(raw))

    def for_job(self, job_id: str) -> list[Delivery]:
        """Return a job's deliveries, oldest first."""
        raw = self.client.hgetall(deliveries_key(job_id))
        deliveries = [Delivery.from_json(_text(value)) for value in raw.values()]
        return sorted(deliveries, key=lambda delivery: (delivery.created_at, delivery.id))

    def save(self, before: Delivery, after: Delivery) -> bool:
        """Replace `before` by `after` if nobody changed it meanwhile; schedule it if due."""
        keys = [deliveries_key(after.job_id), job_key(after.job_id)]
        args = [after.id, before.to_json(), after.to_json(), self._keep_ms(after)]
        if not self._scripts["save"](keys=keys, args=args):
            return False
        if after.state is DeliveryState.PENDING and after.next_attempt_at is not None:
            self.schedule(after.job_id, after.id, after.next_attempt_at)
        return True

    def schedule(self, job_id: str, delivery_id: str, at: float) -> None:
        """Make a delivery due at Unix time `at`."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(DUE_KEY, {due_member(job_id, delivery_id): at})
        pipe.lpush(WAKE_KEY, "1")
        pipe.ltrim(WAKE_KEY, 0, 0)
        pipe.execute()

    def advance(self, job_id: str, delivery_id: str, now: float) -> str | None:
        """Release the job's next waiting delivery once this one had its first attempt."""
        keys = [line_key(job_id), DUE_KEY, WAKE_KEY, deliveries_key(job_id)]
        head = self._scripts["advance"](keys=keys, args=[delivery_id, now, f"{job_id}/"])
        return None if head is None else _text(head)

    def redeliver(self, job_id: str, delivery_id: str, now: float) -> Delivery:
        """Start a new round of attempts for a finished delivery, due now."""
        before = self.get(job_id, delivery_id)
        if before is None:
            raise KeyError(delivery_id)
        if before.state is DeliveryState.PENDING:
            raise DeliveryPendingError(delivery_id)
        after = replace(
            before,
            state=DeliveryState.PENDING,
            next_attempt_at=now,
            round_start=len(before.attempts),
            redeliveries=before.redeliveries + 1,
        )
        if not self.save(before, after):
            raise DeliveryPendingError(delivery_id)
        return after

    def claim_due(self, now: float, lease_s: float, limit: int = 100) -> tuple[list[str], float]:
        """Claim the due-set members due by `now`; return them and the lease score."""
        lease = round(now + lease_s, 3)
        members = self._scripts["claim"](keys=[DUE_KEY], args=[now, repr(lease), limit])
        return [_text(member) for member in members], lease

    def release(self, member: str, lease: float) -> None:
        """Drop a claimed member from the due set (it has been handed to a worker)."""
        self._scripts["release"](keys=[DUE_KEY], args=[member, repr(lease)])

    def next_due(self) -> float | None:
        """Return when the earliest scheduled delivery is due, if any."""
        first = self.client.zrange(DUE_KEY, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def wait_for_wake(self, timeout_s: float) -> None:
        """Block until something new is due now, or the timeout passes."""
        self.client.blpop([WAKE_KEY], timeout=max(timeout_s, 0.01))

    def lock(self, delivery_id: str, ttl_s: float) -> bool:
        """Take the right to attempt a delivery now (one attempt at a time)."""
        key = f"{PREFIX}webhooks:lock:{delivery_id}"
        return bool(self.client.set(key, "1", px=int(ttl_s * 1000), nx=True))

    def unlock(self, delivery_id: str) -> None:
        """Give the right to attempt a delivery back."""
        self.client.delete(f"{PREFIX}webhooks:lock:{delivery_id}")


def event_payload(job: Job, event: WebhookEvent, base_url: str) -> str:
    """Return the body of an event: the job as `GET /v1/jobs/{id}` shows it, plus `event`."""
    body = {"event": event.value, **serialize_job(job, base_url)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def emit_event(store: DeliveryStore, job: Job, event: WebhookEvent, base_url: str) -> str | None:
    """Queue a webhook delivery of a job event if the job wants it; return its id.

    Never raises: a webhook problem must not fail or slow the job.
    """
    if not job.webhook or not wants_event(job.webhook_events_filter, event):
        return None
    try:
        return _add_event(store, job, event, base_url)
    except Exception:
        log.warning("could not queue the %s webhook of job %s", event, job.id, exc_info=True)
        return None


def _add_event(store: DeliveryStore, job: Job, event: WebhookEvent, base_url: str) -> str | None:
    now = time.time()
    delivery = Delivery(
        id=new_delivery_id(now),
        job_id=job.id,
        event=event,
        url=job.webhook or "",
        payload=event_payload(job, event, base_url),
        created_at=now,
        next_attempt_at=now,
    )
    return delivery.id if store.add(delivery, throttle=event is WebhookEvent.OUTPUT) else None


def notify_job_event(jobs: JobStore, job_id: str, event: WebhookEvent, base_url: str) -> str | None:
    """Queue the webhook delivery of a job event, snapshotting the job now (never raises)."""
    try:
        return queue_job_event(jobs, job_id, event, base_url)
    except Exception:
        log.warning("could not queue the %s webhook of job %s", event, job_id, exc_info=True)
        return None


def queue_job_event(jobs: JobStore, job_id: str, event: WebhookEvent, base_url: str) -> str | None:
    """Queue the webhook delivery of a job event if the job wants it; return its id, or
    raise the Redis error that stopped it (to be retried)."""
    if not jobs.client.hget(job_key(job_id), "webhook"):
        return None  # most jobs have no webhook: one cheap read and done
    job = jobs.get(job_id)
    if job is None or not job.webhook or not wants_event(job.webhook_events_filter, event):
        return None
    return _add_event(DeliveryStore(jobs.client, jobs.ttls.final_s), job, event, base_url)
