"""The job lifecycle: listeners in order, failures contained, and the service's listeners."""

from __future__ import annotations

import json
import time

import pytest
import redis

from shared import metrics
from shared.jobs.lifecycle import (
    Ended,
    JobLog,
    Lifecycle,
    Listener,
    Metrics,
    Webhooks,
    service_lifecycle,
)
from shared.jobs.records import Job, JobInput, JobStatus, JobTTLs, NewJob
from shared.jobs.store import JobStore
from shared.webhooks.deliveries import DeliveryStore
from shared.webhooks.events import WebhookEvent

BASE_URL = "http://api.test"
Call = tuple[str, str, object]  # (listener, hook, argument)


class Recorder(Listener):
    """Appends (name, hook, argument) to a shared list."""

    def __init__(self, name: str, calls: list[Call]) -> None:
        self.name = name
        self.calls = calls

    def started(self, job_id: str) -> None:
        self.calls.append((self.name, "started", job_id))

    def output(self, job_id: str) -> None:
        self.calls.append((self.name, "output", job_id))

    def finished(self, ended: Ended) -> None:
        self.calls.append((self.name, "finished", ended))


class Broken(Listener):
    """Raises from every hook."""

    def started(self, job_id: str) -> None:
        raise RuntimeError("started broke")

    def output(self, job_id: str) -> None:
        raise RuntimeError("output broke")

    def finished(self, ended: Ended) -> None:
        raise redis.ConnectionError("finished broke")


def ended(job_id: str = "job1", status: JobStatus = JobStatus.SUCCEEDED, **kw: object) -> Ended:
    """Return an ending with plausible figures."""
    fields: dict[str, object] = {"chars": 40, "total_s": 1.5, "generation_s": 0.5}
    fields.update(kw)
    return Ended(job_id, "tiny", status, **fields)  # type: ignore[arg-type]


def job_record(**kw: object) -> Job:
    """Return a job record as the store would read it."""
    fields: dict[str, object] = {
        "id": "job1",
        "owner": "public",
        "status": JobStatus.CANCELED,
        "model": "tiny",
        "input": JobInput(model="tiny", seed="a", length=5, temperature=1.0),
        "n": 1,
        "random_seed": 7,
        "outputs": ("ab",),
        "done": 2,
        "total": 5,
        "attempts": 0,
        "created_at": 1_700_000_000.0,
        "started_at": None,
        "completed_at": 1_700_000_003.25,
        "expires_at": None,
    }
    fields.update(kw)
    return Job(**fields)  # type: ignore[arg-type]


def test_listeners_are_told_in_order() -> None:
    calls: list[Call] = []
    lifecycle = Lifecycle([Recorder("first", calls), Recorder("second", calls)])
    end = ended()
    lifecycle.started("job1")
    lifecycle.output("job1")
    lifecycle.finished(end)
    assert calls == [
        ("first", "started", "job1"),
        ("second", "started", "job1"),
        ("first", "output", "job1"),
        ("second", "output", "job1"),
        ("first", "finished", end),
        ("second", "finished", end),
    ]


def test_a_failing_listener_neither_stops_the_others_nor_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[Call] = []
    lifecycle = Lifecycle([Broken(), Recorder("after", calls)])
    end = ended()
    lifecycle.started("job1")
    lifecycle.output("job1")
    lifecycle.finished(end)
    assert [hook for _, hook, _ in calls] == ["started", "output", "finished"]
    failures = [r for r in caplog.records if r.getMessage() == "a job lifecycle listener failed"]
    assert len(failures) == 3 and all(r.exc_info for r in failures)


def test_the_base_listener_ignores_every_hook() -> None:
    lifecycle = Lifecycle([Listener()])
    lifecycle.started("job1")
    lifecycle.output("job1")
    lifecycle.finished(ended())


def test_ended_unrun_measures_from_creation_to_completion() -> None:
    got = Ended.unrun(job_record())
    assert got == Ended("job1", "tiny", JobStatus.CANCELED, 2, total_s=3.25)
    assert got.generation_s is None


def test_ended_unrun_of_a_job_without_completion_time_measures_up_to_now() -> None:
    created = time.time() - 10
    before = time.time()
    got = Ended.unrun(job_record(created_at=created, completed_at=None))
    assert before - created <= got.total_s <= time.time() - created


def metrics_snapshot(client: redis.Redis) -> dict[str, dict[str, str]]:
    """Return every metrics hash in Redis."""
    keys = sorted(str(k) for k in client.scan_iter(match=metrics.PREFIX + "*"))
    return {key: client.hgetall(key) for key in keys}  # type: ignore[misc]


@pytest.mark.parametrize(
    "end",
    [
        ended(),
        ended("job2", JobStatus.CANCELED, chars=0, generation_s=None),
        ended("job3", JobStatus.TIMED_OUT, chars=12, total_s=700.0),
    ],
    ids=["succeeded", "canceled-unrun", "timed-out"],
)
def test_the_metrics_listener_records_what_record_finished_would(
    redis_client: redis.Redis, end: Ended
) -> None:
    Metrics(redis_client).finished(end)
    recorded = metrics_snapshot(redis_client)
    for key in recorded:
        redis_client.delete(key)
    metrics.record_finished(
        redis_client,
        model=end.model,
        status=end.status.value,
        chars=end.chars,
        generation_s=end.generation_s,
        total_s=end.total_s,
    )
    assert recorded == metrics_snapshot(redis_client)
    assert recorded[metrics.JOBS_KEY] == {end.status.value: "1"}
    assert redis_client.hget(metrics.CHARS_KEY, "tiny") == (str(end.chars) if end.chars else None)


def test_the_metrics_listener_ignores_the_other_hooks(redis_client: redis.Redis) -> None:
    listener = Metrics(redis_client)
    listener.started("job1")
    listener.output("job1")
    assert metrics_snapshot(redis_client) == {}


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    """Return a job store over the flushed session Redis."""
    return JobStore(redis_client, JobTTLs(active_s=3600, final_s=600))


def create_job(store: JobStore, job_id: str, webhook: str | None, events: tuple[str, ...]) -> None:
    spec = JobInput(model="tiny", seed="a", length=3, temperature=1.0)
    new = NewJob(job_id, "public", "tiny", spec, 1, 1, 3, "f", webhook, events)
    store.create(new, idempotency=None, max_queue_depth=10)


def events_of(store: JobStore, job_id: str) -> list[str]:
    deliveries = DeliveryStore(store.client, keep_s=600).for_job(job_id)
    return [json.loads(d.payload)["event"] for d in deliveries]


def test_the_webhooks_listener_queues_a_delivery_only_for_a_job_with_a_webhook(
    store: JobStore,
) -> None:
    create_job(store, "hooked", "http://x.test/hook", ("start", "output", "completed"))
    create_job(store, "plain", None, ("start", "output", "completed"))
    listener = Webhooks(store, BASE_URL)
    for job_id in ("hooked", "plain"):
        listener.finished(ended(job_id, JobStatus.CANCELED))
    assert events_of(store, "hooked") == ["completed"]
    assert events_of(store, "plain") == []
    (delivery,) = DeliveryStore(store.client, keep_s=600).for_job("hooked")
    assert delivery.event is WebhookEvent.COMPLETED and delivery.url == "http://x.test/hook"
    body = json.loads(delivery.payload)
    assert body["id"] == "hooked" and body["urls"]["get"] == f"{BASE_URL}/v1/jobs/hooked"


def test_the_webhooks_listener_follows_the_job_events_filter(store: JobStore) -> None:
    create_job(store, "hooked", "http://x.test/hook", ("start",))
    listener = Webhooks(store, BASE_URL)
    listener.started("hooked")
    listener.output("hooked")  # filtered out
    listener.finished(ended("hooked"))  # `completed` is always sent
    assert events_of(store, "hooked") == ["start", "completed"]


def test_the_webhooks_listener_of_a_missing_job_queues_nothing(store: JobStore) -> None:
    Webhooks(store, BASE_URL).finished(ended("no-such-job"))
    assert events_of(store, "no-such-job") == []


def test_the_service_lifecycle_logs_then_counts_then_notifies(store: JobStore) -> None:
    lifecycle = service_lifecycle(store, BASE_URL)
    assert [type(listener) for listener in lifecycle.listeners] == [JobLog, Metrics, Webhooks]
    webhooks = lifecycle.listeners[2]
    assert isinstance(webhooks, Webhooks) and webhooks.base_url == BASE_URL


def test_the_service_lifecycle_records_a_canceled_queued_job(store: JobStore) -> None:
    create_job(store, "hooked", "http://x.test/hook", ())
    assert store.cancel("hooked", 1) == "canceled"
    job = store.get("hooked")
    assert job is not None
    service_lifecycle(store, BASE_URL).finished(Ended.unrun(job))
    assert store.client.hget(metrics.JOBS_KEY, "canceled") == "1"
    assert job.status is JobStatus.CANCELED
    assert events_of(store, "hooked") == ["completed"]
