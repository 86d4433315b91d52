"""Webhooks end to end: the API under gunicorn, a generation worker, a webhook worker, Redis,
and a receiver on loopback that checks every delivery with the `standardwebhooks` library."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks import Webhook

from tests.conftest import wait_for
from tests.integration.conftest import (
    ApiHandle,
    ServiceProcess,
    StartApi,
    StartWebhookWorker,
    StartWorker,
)
from tests.integration.service.helpers import (
    check_problem,
    check_schema,
    get_job,
    submit,
    wait_status,
)
from tests.webhook_receiver import SECRET_A, SECRET_B, Answer, Received, Receiver

SCHEDULE = "0.2,0.2,0.2"  # seconds before each retry: three retries, quickly
TIMEOUT_S = 1.5  # a receiver answering later than this has failed the attempt
PUBLIC_URL = "http://lstmgen.test"  # the API and workers agree on job URLs through this


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    """Start one receiver for the module; each test uses its own path."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def webhook_worker(start_webhook_worker: StartWebhookWorker) -> ServiceProcess:
    """Start the webhook worker (two secrets: rotation)."""
    return start_webhook_worker(
        webhook_allow_private=True,
        webhook_secrets=[SECRET_A, SECRET_B],
        webhook_retry_schedule=SCHEDULE,
        webhook_timeout_s=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def stack(
    start_api: StartApi, start_worker: StartWorker, webhook_worker: ServiceProcess
) -> ApiHandle:
    """Start a generation worker and the API, beside the webhook worker."""
    start_worker(worker_models="tiny", public_url=PUBLIC_URL)
    return start_api(webhook_allow_private=True, public_url=PUBLIC_URL)


def event(request: Received) -> str:
    """Return the event type of a delivery, after checking both rotated signatures."""
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    for secret, signature in zip((SECRET_A, SECRET_B), signatures, strict=True):
        Webhook(secret).verify(request.body, {**request.headers, "webhook-signature": signature})
    kind: str = json.loads(request.body)["event"]
    return kind


def completed(requests: list[Received]) -> bool:
    """Return whether a `completed` event has arrived."""
    return any(json.loads(r.body)["event"] == "completed" for r in requests)


def deliveries(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """Return a job's deliveries (asserting 200)."""
    response = api.get(f"/v1/jobs/{job_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def final_delivery(api: httpx.Client, job_id: str, index: int = 0) -> dict[str, Any]:
    """Wait until a job's delivery has ended; return it."""

    def ended() -> dict[str, Any] | None:
        found = deliveries(api, job_id)
        return found[index] if len(found) > index and found[index]["state"] != "pending" else None

    result: dict[str, Any] = wait_for(ended, 20.0, f"delivery {index} of job {job_id} to end")
    return result


def test_events_arrive_in_order_signed_and_carry_the_job(
    api: httpx.Client, hooks: Receiver, spec: dict[str, Any]
) -> None:
    job = submit(api, model="tiny", seed="hello", length=10_000, webhook=hooks.url("/order"))
    got = hooks.wait_until(completed, "/order", timeout=60)
    events = [event(request) for request in got]
    assert events[0] == "start" and events[-1] == "completed"
    assert set(events[1:-1]) <= {"output"}
    assert len({request.headers["webhook-id"] for request in got}) == len(got)
    bodies = [json.loads(request.body) for request in got]
    outputs = [body["output"] for body in bodies]
    assert all(a == b[: len(a)] for a, b in itertools.pairwise(outputs))
    final = get_job(api, job["id"])
    last = bodies[-1]
    assert last["status"] == "succeeded" and last["output"] == final["output"]
    # `output` events: at most one per 500 ms, and some during a job that lasts seconds.
    generation_s = final["metrics"]["generation_time_s"]
    assert events.count("output") <= generation_s / 0.5 + 1
    assert events.count("output") >= 1 or generation_s < 1.0
    assert {key: last[key] for key in final} == final
    check_schema(spec, "WebhookEvent", last)
    listed = deliveries(api, job["id"])
    check_schema(spec, "DeliveryList", {"deliveries": listed})
    assert [d["event"] for d in listed] == events


def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt(
    api: httpx.Client, hooks: Receiver
) -> None:
    hooks.script("/flaky", Answer(500), Answer(500))
    job = submit(api, model="tiny", seed="a", length=20, webhook=hooks.url("/flaky"),
                 webhook_events_filter=["completed"])  # fmt: skip
    got = hooks.wait_for(3, "/flaky")
    assert len({request.headers["webhook-id"] for request in got}) == 1
    assert [event(request) for request in got] == ["completed"] * 3
    delivery = final_delivery(api, job["id"])
    assert delivery["state"] == "succeeded" and delivery["id"] == got[0].headers["webhook-id"]
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert all(a["latency_ms"] >= 0 and a["time"] for a in delivery["attempts"])


def test_410_stops_retries_and_redeliver_sends_again_with_the_same_id(
    api: httpx.Client, hooks: Receiver
) -> None:
    hooks.script("/gone", Answer(410))
    job = submit(api, model="tiny", seed="a", length=20, webhook=hooks.url("/gone"),
                 webhook_events_filter=["completed"])  # fmt: skip
    delivery = final_delivery(api, job["id"])
    assert delivery["state"] == "gone" and delivery["next_attempt_at"] is None
    assert [a["status_code"] for a in delivery["attempts"]] == [410]
    response = api.post(f"/v1/jobs/{job['id']}/deliveries/{delivery['id']}/redeliver")
    assert response.status_code == 202, response.text
    first, second = hooks.wait_for(2, "/gone")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery["id"]
    assert first.body == second.body

    def redelivered() -> dict[str, Any] | None:
        found = deliveries(api, job["id"])[0]
        return found if found["state"] == "succeeded" else None

    again = wait_for(redelivered, 20.0, "the redelivery to succeed")
    assert again["redeliveries"] == 1 and len(again["attempts"]) == 2
    check_problem(api.post(f"/v1/jobs/{job['id']}/deliveries/msg_00/redeliver"), 404)
    check_problem(api.post(f"/v1/jobs/nope/deliveries/{delivery['id']}/redeliver"), 404)
    check_problem(api.get("/v1/jobs/nope/deliveries"), 404)


def test_a_redirect_is_not_followed(api: httpx.Client, hooks: Receiver) -> None:
    hooks.script("/redirect", Answer(307, {"Location": hooks.url("/elsewhere")}))
    job = submit(api, model="tiny", seed="a", length=20, webhook=hooks.url("/redirect"),
                 webhook_events_filter=["completed"])  # fmt: skip
    delivery = final_delivery(api, job["id"])
    assert delivery["state"] == "failed"
    assert delivery["attempts"][0]["status_code"] == 307
    assert hooks.received("/elsewhere") == []


def test_a_receiver_that_never_answers_does_not_slow_generation(
    api: httpx.Client, hooks: Receiver, webhook_worker: ServiceProcess
) -> None:
    hooks.script("/silent", *[Answer(hang=True)] * 10)
    job = submit(api, model="tiny", seed="a", length=2000, webhook=hooks.url("/silent"))
    hooks.wait_for(1, "/silent")  # `start` is stuck in the receiver
    # Stuck it stays: stopped, the webhook worker cannot time the attempt out (TIMEOUT_S), use
    # up its retries and go on to the job's next events while this test looks, however slowly.
    # The generation worker, which only queues deliveries, runs on.
    with webhook_worker.paused():
        done = wait_status(api, job["id"], timeout=30)
        assert done["status"] == "succeeded" and len(done["output"]) == 2000
        # The job is finished while its first event has not even been answered once.
        start, *rest = deliveries(api, job["id"])
    assert start["event"] == "start" and start["state"] == "pending"
    assert all(a["status_code"] is None for a in start["attempts"])
    assert all(d["attempts"] == [] for d in rest)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "ftp://example.com/",
    ],
)
def test_private_targets_are_refused_at_submit(strict_api: httpx.Client, url: str) -> None:
    response = strict_api.post("/v1/jobs", json={"model": "tiny", "seed": "a", "webhook": url})
    body = check_problem(response, 422, "webhook")
    assert "webhook" in body["detail"]


@pytest.fixture(scope="module")
def keyed(start_api: StartApi, stack: ApiHandle) -> ApiHandle:
    """Start a second API with API keys that refuses private webhook targets (the default)."""
    return start_api(webhook_allow_private=False, api_keys="alice-key,bob-key")


@pytest.fixture(scope="module")
def strict_api(keyed: ApiHandle) -> httpx.Client:
    """Return alice's client of the API that refuses private webhook targets."""
    return keyed.client("alice-key")


def test_deliveries_of_another_key_are_not_found(
    keyed: ApiHandle, redis_client: redis.Redis
) -> None:
    alice, bob = keyed.client("alice-key"), keyed.client("bob-key")
    job = submit(alice, model="tiny", seed="a", length=5)
    assert deliveries(alice, job["id"]) == []
    check_problem(bob.get(f"/v1/jobs/{job['id']}/deliveries"), 404)
    check_problem(bob.post(f"/v1/jobs/{job['id']}/deliveries/msg_00/redeliver"), 404)
