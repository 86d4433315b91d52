"""Delivery against a real receiver and a real Redis: order, retries, 410, redirects, timeouts.

The scheduler runs on a thread and hands due deliveries to a thread pool that plays the webhook
worker (the Celery path itself is covered end to end in test_end_to_end.py).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest
import redis
from standardwebhooks import Webhook

from shared.jobs.keys import job_key
from shared.jobs.records import Job, JobInput, JobStatus, JobTTLs, NewJob
from shared.jobs.store import JobStore
from shared.settings import Settings
from shared.webhooks.deliveries import (
    DUE_KEY,
    Delivery,
    DeliveryPendingError,
    DeliveryState,
    DeliveryStore,
    deliveries_key,
    emit_event,
    line_key,
    new_delivery_id,
    notify_job_event,
)
from shared.webhooks.events import WebhookEvent
from shared.webhooks.ssrf import make_webhook_client
from tests.conftest import wait_for
from tests.webhook_receiver import SECRET_A, SECRET_B, Answer, Receiver
from worker.webhook_worker import (
    Deliverer,
    Scheduler,
    SchedulerThread,
    parse_retry_after,
    retry_delay,
)

BASE_URL = "http://api.test"
DELAYS = (0.2, 0.2, 0.2)


def make_job(
    url: str, events: tuple[str, ...] = ("start", "output", "completed"), **kw: object
) -> Job:
    """Return a job record as the store would read it."""
    fields: dict[str, object] = {
        "id": "job1",
        "owner": "public",
        "status": JobStatus.RUNNING,
        "model": "default",
        "input": JobInput(model="default", seed="a", length=5, temperature=1.0),
        "n": 1,
        "random_seed": 7,
        "outputs": ("",),
        "done": 0,
        "total": 5,
        "attempts": 1,
        "created_at": time.time(),
        "started_at": time.time(),
        "completed_at": None,
        "expires_at": None,
        "webhook": url,
        "webhook_events_filter": events,
    }
    fields.update(kw)
    return Job(**fields)  # type: ignore[arg-type]


@dataclass
class Harness:
    """A store, a deliverer and a running scheduler feeding a pool of delivery threads."""

    store: DeliveryStore
    deliverer: Deliverer

    def emit(self, job: Job, event: WebhookEvent) -> str | None:
        return emit_event(self.store, job, event, BASE_URL)

    def final(self, job_id: str, delivery_id: str, timeout: float = 15.0) -> Delivery:
        def done() -> Delivery | None:
            found = self.store.get(job_id, delivery_id)
            return found if found and found.state is not DeliveryState.PENDING else None

        result = wait_for(done, timeout, f"delivery {delivery_id} to end")
        assert isinstance(result, Delivery)
        return result


@pytest.fixture
def harness(webhook_redis: redis.Redis) -> Iterator[Harness]:
    settings = Settings(webhook_allow_private=True, webhook_timeout_s=1.0)
    store = DeliveryStore(webhook_redis, keep_s=600)
    client = make_webhook_client(settings)
    deliverer = Deliverer(store, client, (SECRET_A,), 1.0, DELAYS, random.Random(1))
    pool = ThreadPoolExecutor(4)

    def publish(job_id: str, delivery_id: str) -> None:
        pool.submit(deliverer.deliver, job_id, delivery_id)

    scheduler = SchedulerThread(Scheduler(store, publish, poll_s=0.2))
    scheduler.start()
    yield Harness(store, deliverer)
    scheduler.stop()
    pool.shutdown(wait=True)
    client.close()


def events_of(receiver: Receiver, path: str = "/hook") -> list[str]:
    return [json.loads(r.body)["event"] for r in receiver.received(path)]


def test_events_arrive_in_order_signed_with_the_job_object(
    harness: Harness, receiver: Receiver
) -> None:
    job = make_job(receiver.url())
    receiver.script("/hook", Answer(hang=True))  # hold `start` until released
    harness.emit(job, WebhookEvent.START)
    receiver.wait_for(1)
    harness.emit(replace(job, outputs=("ab",), done=2), WebhookEvent.OUTPUT)
    completed = replace(job, status=JobStatus.SUCCEEDED, outputs=("abcde",), done=5,
                        completed_at=time.time(), finish_reasons=("length",))  # fmt: skip
    harness.emit(completed, WebhookEvent.COMPLETED)
    # While `start` is unanswered the later events wait in the job's line, not in the queue.
    assert len(harness.store.client.lrange(line_key("job1"), 0, -1)) == 3
    assert harness.store.client.zcard(DUE_KEY) == 0
    receiver.release.set()
    got = receiver.wait_for(3)
    assert events_of(receiver) == ["start", "output", "completed"]
    bodies = [r.verify(SECRET_A) for r in got]
    assert [b["output"] for b in bodies] == ["", "ab", "abcde"]  # type: ignore[index]
    last = bodies[-1]
    assert isinstance(last, dict)
    assert last["id"] == "job1" and last["status"] == "succeeded"
    assert last["urls"]["get"] == f"{BASE_URL}/v1/jobs/job1"
    assert len({r.headers["webhook-id"] for r in got}) == 3


def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt_same_id(
    harness: Harness, receiver: Receiver
) -> None:
    receiver.script("/hook", Answer(500), Answer(503), Answer(200))
    delivery_id = harness.emit(make_job(receiver.url(), ()), WebhookEvent.COMPLETED)
    assert delivery_id is not None
    got = receiver.wait_for(3)
    assert {r.headers["webhook-id"] for r in got} == {delivery_id}
    for request in got:
        request.verify(SECRET_A)
    assert got[1].at - got[0].at >= DELAYS[0] and got[2].at - got[1].at >= DELAYS[1]
    delivery = harness.final("job1", delivery_id)
    assert delivery.state is DeliveryState.SUCCEEDED
    assert [a.status_code for a in delivery.attempts] == [500, 503, 200]
    assert [a.error for a in delivery.attempts] == ["HTTP 500", "HTTP 503", None]
    assert all(a.latency_ms >= 0 for a in delivery.attempts)


def test_410_stops_retrying(harness: Harness, receiver: Receiver) -> None:
    receiver.script("/hook", Answer(410), Answer(200))
    delivery_id = harness.emit(make_job(receiver.url(), ()), WebhookEvent.COMPLETED)
    assert delivery_id is not None
    delivery = harness.final("job1", delivery_id)
    assert delivery.state is DeliveryState.GONE
    assert [a.status_code for a in delivery.attempts] == [410]
    assert delivery.next_attempt_at is None
    assert harness.store.client.zcard(DUE_KEY) == 0  # nothing left to retry
    assert len(receiver.received()) == 1


def test_a_redirect_is_not_followed(harness: Harness, receiver: Receiver) -> None:
    receiver.script("/hook", Answer(302, {"Location": receiver.url("/elsewhere")}))
    delivery_id = harness.emit(make_job(receiver.url(), ()), WebhookEvent.COMPLETED)
    assert delivery_id is not None
    delivery = harness.final("job1", delivery_id)
    assert delivery.state is DeliveryState.FAILED
    assert delivery.attempts[0].status_code == 302
    assert "redirects are not followed" in (delivery.attempts[0].error or "")
    assert receiver.received("/elsewhere") == []


def test_retries_end_exhausted_after_the_schedule(harness: Harness, receiver: Receiver) -> None:
    receiver.script("/hook", *[Answer(502)] * 10)
    delivery_id = harness.emit(make_job(receiver.url(), ()), WebhookEvent.COMPLETED)
    assert delivery_id is not None
    delivery = harness.final("job1", delivery_id)
    assert delivery.state is DeliveryState.EXHAUSTED
    assert len(delivery.attempts) == 1 + len(DELAYS)


def test_429_retry_after_is_honoured(harness: Harness, receiver: Receiver) -> None:
    receiver.script("/hook", Answer(429, {"Retry-After": "1"}))
    delivery_id = harness.emit(make_job(receiver.url(), ()), WebhookEvent.COMPLETED)
    assert delivery_id is not None
    first, second = receiver.wait_for(2)
    assert second.at - first.at >= 1.0
    assert harness.final("job1", delivery_id).state is DeliveryState.SUCCEEDED


def test_a_receiver_that_never_answers_times_out_and_is_retried(
    harness: Harness, receiver: Receiver
) -> None:
    receiver.script("/hook", Answer(hang=True))
    delivery_id = harness.emit(make_job(receiver.url(), ()), WebhookEvent.COMPLETED)
    assert delivery_id is not None
    receiver.wait_for(2, timeout=10)
    delivery = harness.final("job1", delivery_id)
    assert delivery.state is DeliveryState.SUCCEEDED
    assert isinstance(delivery, Delivery)
    first = delivery.attempts[0]
    assert first.status_code is None and "no answer within 1 s" in (first.error or "")


def test_connection_refused_is_retried(harness: Harness) -> None:
    closed = Receiver()  # bound but never serving: connections are refused after close
    url = closed.url()
    closed.server.server_close()
    delivery_id = harness.emit(make_job(url, ()), WebhookEvent.COMPLETED)
    assert delivery_id is not None
    delivery = harness.final("job1", delivery_id)
    assert delivery.state is DeliveryState.EXHAUSTED
    assert all("ConnectError" in (a.error or "") for a in delivery.attempts)


def test_rotation_yields_two_valid_signatures(harness: Harness, receiver: Receiver) -> None:
    harness.deliverer.secrets = (SECRET_A, SECRET_B)
    harness.emit(make_job(receiver.url(), ()), WebhookEvent.COMPLETED)
    (got,) = receiver.wait_for(1)
    signatures = got.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    for secret, signature in zip((SECRET_A, SECRET_B), signatures, strict=True):
        Webhook(secret).verify(got.body, {**got.headers, "webhook-signature": signature})


def test_redeliver_sends_again_with_the_same_id(harness: Harness, receiver: Receiver) -> None:
    delivery_id = harness.emit(make_job(receiver.url(), ()), WebhookEvent.COMPLETED)
    assert delivery_id is not None
    harness.final("job1", delivery_id)
    again = harness.store.redeliver("job1", delivery_id, time.time())
    assert again.state is DeliveryState.PENDING
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery_id
    assert first.body == second.body
    delivery = wait_for(
        lambda: (d := harness.store.get("job1", delivery_id)) and len(d.attempts) == 2 and d,
        message="second attempt recorded",
    )
    assert isinstance(delivery, Delivery)
    assert delivery.state is DeliveryState.SUCCEEDED and delivery.redeliveries == 1


def test_redeliver_refuses_a_pending_delivery(webhook_redis: redis.Redis) -> None:
    store = DeliveryStore(webhook_redis, keep_s=600)
    job = make_job("http://127.0.0.1:9/hook", ())
    delivery_id = emit_event(store, job, WebhookEvent.COMPLETED, BASE_URL)
    assert delivery_id is not None
    with pytest.raises(DeliveryPendingError):
        store.redeliver("job1", delivery_id, time.time())
    with pytest.raises(KeyError):
        store.redeliver("job1", "msg_unknown", time.time())


def test_output_events_are_throttled_to_one_per_500_ms(webhook_redis: redis.Redis) -> None:
    store = DeliveryStore(webhook_redis, keep_s=600)
    job = make_job("http://127.0.0.1:9/hook")
    started = time.monotonic()
    taken = [emit_event(store, job, WebhookEvent.OUTPUT, BASE_URL) for _ in range(20)]
    if time.monotonic() - started < 0.5:
        assert sum(1 for t in taken if t) == 1
    assert emit_event(store, job, WebhookEvent.COMPLETED, BASE_URL) is not None  # never throttled
    wait_for(lambda: emit_event(store, job, WebhookEvent.OUTPUT, BASE_URL), 2.0, "gate to open")


def test_a_waiting_output_is_replaced_by_a_newer_one(webhook_redis: redis.Redis) -> None:
    store = DeliveryStore(webhook_redis, keep_s=600)

    def add(event: WebhookEvent, text: str) -> str:
        now = time.time()
        delivery = Delivery(new_delivery_id(now), "job1", event, "http://x.test/", text, now)
        assert store.add(delivery, throttle=False)
        return delivery.id

    head = add(WebhookEvent.START, "s")
    add(WebhookEvent.OUTPUT, "o1")
    newer = add(WebhookEvent.OUTPUT, "o2")
    last = add(WebhookEvent.COMPLETED, "c")
    assert webhook_redis.lrange(line_key("job1"), 0, -1) == [head, newer, last]
    assert [d.payload for d in store.for_job("job1")] == ["s", "o2", "c"]


def test_filtered_events_and_jobs_without_webhook_send_nothing(
    webhook_redis: redis.Redis,
) -> None:
    store = DeliveryStore(webhook_redis, keep_s=600)
    assert (
        emit_event(store, make_job("http://x.test/", ("output",)), WebhookEvent.START, BASE_URL)
        is None
    )
    assert emit_event(store, make_job("", ()), WebhookEvent.COMPLETED, BASE_URL) is None
    assert emit_event(store, make_job("http://x.test/", ()), WebhookEvent.COMPLETED, BASE_URL)


def test_records_live_at_least_as_long_as_the_job(webhook_redis: redis.Redis) -> None:
    webhook_redis.hset(job_key("job1"), "id", "job1")
    webhook_redis.expire(job_key("job1"), 7200)
    store = DeliveryStore(webhook_redis, keep_s=600)
    emit_event(store, make_job("http://x.test/", ()), WebhookEvent.COMPLETED, BASE_URL)
    assert 7000 < webhook_redis.ttl(deliveries_key("job1")) <= 7200
    webhook_redis.expire(job_key("job1"), 10)
    emit_event(store, make_job("http://x.test/", ()), WebhookEvent.COMPLETED, BASE_URL)
    assert 590 < webhook_redis.ttl(deliveries_key("job1")) <= 600


def test_a_claimed_but_unqueued_retry_is_due_again_after_its_lease(
    webhook_redis: redis.Redis,
) -> None:
    store = DeliveryStore(webhook_redis, keep_s=600)
    store.schedule("job1", "msg_1", time.time())
    lost: list[tuple[str, str]] = []

    def crash(job_id: str, delivery_id: str) -> None:
        lost.append((job_id, delivery_id))
        raise ConnectionError("broker down")

    assert Scheduler(store, crash, lease_s=0.3).run_once(time.time()) == 1
    assert Scheduler(store, crash, lease_s=0.3).run_once(time.time()) == 0  # leased
    queued: list[tuple[str, str]] = []
    ok = Scheduler(store, lambda j, d: queued.append((j, d)), lease_s=0.3)
    wait_for(lambda: ok.run_once(time.time()), 5.0, "lease to end")
    assert queued == [("job1", "msg_1")] and webhook_redis.zcard(DUE_KEY) == 0


def test_retry_delays_follow_the_schedule_with_upward_jitter() -> None:
    rng = random.Random(3)
    delays = [5.0, 30.0]
    first = retry_delay(1, delays, None, rng)
    second = retry_delay(2, delays, None, rng)
    assert first is not None and 5.0 <= first <= 6.25
    assert second is not None and 30.0 <= second <= 37.5
    assert retry_delay(3, delays, None, rng) is None
    honoured = retry_delay(1, delays, 120.0, rng)
    assert honoured is not None and honoured >= 120.0


def test_default_schedule_spans_more_than_a_day() -> None:
    assert sum(Settings().retry_delays) > 86_400


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:20 GMT", now) == pytest.approx(120.0)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_duplicate_messages_make_one_attempt(harness: Harness, receiver: Receiver) -> None:
    receiver.script("/hook", Answer(hang=True))
    delivery_id = harness.emit(make_job(receiver.url(), ()), WebhookEvent.COMPLETED)
    assert delivery_id is not None
    receiver.wait_for(1)
    # A second message for the same attempt, while the first is in flight, does nothing.
    assert harness.deliverer.deliver("job1", delivery_id) is None
    receiver.release.set()
    delivery = harness.final("job1", delivery_id)
    assert len(delivery.attempts) >= 1


def test_the_job_hook_snapshots_the_stored_job(webhook_redis: redis.Redis) -> None:
    jobs = JobStore(webhook_redis, JobTTLs(active_s=3600, final_s=600))
    new = NewJob(
        id="job9",
        owner="public",
        model="default",
        input=JobInput(model="default", seed="a", length=3, temperature=1.0),
        n=1,
        random_seed=1,
        total=3,
        fingerprint="f",
        webhook="http://x.test/hook",
        webhook_events_filter=("start",),
    )
    jobs.create(new, idempotency=None, max_queue_depth=10)
    delivery_id = notify_job_event(jobs, "job9", WebhookEvent.START, BASE_URL)
    assert delivery_id is not None
    assert notify_job_event(jobs, "job9", WebhookEvent.OUTPUT, BASE_URL) is None  # filtered out
    (delivery,) = DeliveryStore(webhook_redis, keep_s=600).for_job("job9")
    body = json.loads(delivery.payload)
    assert body["event"] == "start" and body["id"] == "job9" and body["status"] == "queued"
    assert notify_job_event(jobs, "no-such-job", WebhookEvent.COMPLETED, BASE_URL) is None
