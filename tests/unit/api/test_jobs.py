"""`/v1/jobs` in-process: validation problems, a stored and enqueued job, cancel while queued.

No worker runs: a created job stays queued (its Celery message waits in the real Redis broker).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api.problems import PROBLEM_JSON
from api.services import Services
from shared import metrics
from shared.celery_app import generation_queue
from shared.jobs.records import (
    Final,
    FlushOutcome,
    JobInput,
    JobStatus,
    NewJob,
    Progress,
)
from shared.jobs.tenants import owner_of
from shared.webhooks.deliveries import DeliveryStore
from shared.webhooks.events import WebhookEvent
from tests.unit.api.conftest import BASE_URL, MAX_SEED_CHARS

TINY_QUEUE = generation_queue("tiny")


@pytest.fixture(autouse=True)
def empty_tiny_queue(redis_client: redis.Redis) -> Iterator[None]:
    """Drop the Celery messages the tests publish (no worker consumes them)."""
    redis_client.delete(TINY_QUEUE)
    yield
    redis_client.delete(TINY_QUEUE)


def problem_fields(response: TestResponse, status: int) -> list[str]:
    """Check a problem+json answer and return the fields its errors name."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    return [error["field"] for error in body.get("errors", [])]


def post(client: FlaskClient, payload: object) -> TestResponse:
    return client.post("/v1/jobs", json=payload)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"temperature": 9}, "temperature"),
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"length": 0}, "length"),
        ({"n": 5}, "n"),
        ({"model": "no-such-model"}, "model"),
        ({"webhook_events_filter": ["start", "finished"]}, "webhook_events_filter[1]"),
        ({"seed": "ÆØÅ", "unknown_chars": "drop"}, "seed"),
        ({"seed": "ÆØÅ"}, "seed"),
        ({"seed": "a" * (MAX_SEED_CHARS + 1)}, "seed"),
        ({"stop": [""]}, "stop[0]"),
        ({"colour": "blue"}, "colour"),
    ],
    ids=[
        "temperature-too-high",
        "temperature-negative",
        "temperature-not-a-number",
        "length-zero",
        "n-too-large",
        "unknown-model",
        "unknown-webhook-event",
        "seed-with-no-known-character",
        "seed-with-unknown-characters",
        "seed-too-long",
        "empty-stop-sequence",
        "unknown-field",
    ],
)
def test_an_invalid_job_answers_422_naming_the_field(
    client: FlaskClient, services: Services, payload: dict[str, Any], field: str
) -> None:
    assert problem_fields(post(client, payload), 422) == [field]
    assert services.store.queue_depth() == 0


def test_the_unknown_model_problem_lists_the_available_models(client: FlaskClient) -> None:
    body = post(client, {"model": "nope"}).get_json()
    assert "tiny, tiny2, tiny3" in body["errors"][0]["message"]


def test_unknown_seed_characters_are_listed_in_the_problem(client: FlaskClient) -> None:
    body = post(client, {"seed": "abcÆ"}).get_json()
    assert body["unknown_characters"] == ["Æ"]


def test_a_body_that_is_not_json_answers_400(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", data=b'{"seed": ', content_type="application/json")
    assert problem_fields(response, 400) == ["body"]


def test_a_json_body_that_is_not_an_object_answers_422(client: FlaskClient) -> None:
    assert problem_fields(post(client, ["seed"]), 422) == ["body"]


def test_a_body_of_another_content_type_answers_415(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", data="seed=the", content_type="text/plain")
    assert problem_fields(response, 415) == []
    assert "application/json" in response.get_json()["detail"]


def test_a_valid_job_is_stored_queued_and_enqueued(
    client: FlaskClient, services: Services, redis_client: redis.Redis
) -> None:
    payload = {"seed": "the ", "length": 30, "n": 2, "random_seed": 5, "metadata": {"k": 1}}
    response = post(client, payload)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    job_id = body["id"]
    assert response.headers["Location"].endswith(f"/v1/jobs/{job_id}")
    assert body["status"] == "queued" and body["model"] == "tiny"
    assert body["input"]["seed"] == "the " and body["input"]["n"] == 2
    assert body["random_seed"] == 5 and body["progress"] == {"done": 0, "total": 60}
    assert body["output"] == ["", ""] and body["metadata"] == {"k": 1}
    assert body["urls"]["get"] == f"{BASE_URL}/v1/jobs/{job_id}"
    assert body["webhook_events_filter"] == [event.value for event in WebhookEvent]
    stored = client.get(f"/v1/jobs/{job_id}")
    assert stored.status_code == 200 and stored.get_json() == body
    assert services.store.queue_depth() == 1
    assert metrics.queue_depths(redis_client, [TINY_QUEUE]) == {TINY_QUEUE: 1}
    assert redis_client.hget(metrics.JOBS_KEY, "queued") == "1"


def test_the_model_defaults_fill_in_what_the_request_leaves_out(client: FlaskClient) -> None:
    body = post(client, {}).get_json()
    assert body["model"] == "tiny"
    assert body["input"]["length"] == 20 and body["input"]["temperature"] == 0.5
    assert isinstance(body["random_seed"], int)


def test_an_unknown_job_answers_404(client: FlaskClient) -> None:
    assert problem_fields(client.get("/v1/jobs/no-such-job"), 404) == []
    assert problem_fields(client.post("/v1/jobs/no-such-job/cancel"), 404) == []


def test_canceling_a_queued_job_ends_it_and_counts_it_through_the_lifecycle(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    job_id = post(client, {"length": 10}).get_json()["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "canceled" and body["completed_at"] is not None
    assert client.get(f"/v1/jobs/{job_id}").get_json()["status"] == "canceled"
    assert redis_client.hget(metrics.JOBS_KEY, "canceled") == "1"


def test_canceling_a_canceled_job_again_reports_its_end_only_once(
    client: FlaskClient, services: Services, redis_client: redis.Redis
) -> None:
    spec = JobInput(model="tiny", seed="a", length=5, temperature=1.0)
    job = NewJob("hooked", owner_of(None), "tiny", spec, 1, 1, 5, "f", "http://x.test/hook")
    services.store.create(job, idempotency=None, max_queue_depth=10)
    for _ in range(2):
        response = client.post("/v1/jobs/hooked/cancel")
        assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    deliveries = DeliveryStore(redis_client, keep_s=600).for_job("hooked")
    assert [d.event for d in deliveries] == [WebhookEvent.COMPLETED]
    assert redis_client.hget(metrics.JOBS_KEY, "canceled") == "1"


def test_the_job_list_shows_the_new_job(client: FlaskClient) -> None:
    job_id = post(client, {"length": 10}).get_json()["id"]
    listed = client.get("/v1/jobs?status=queued").get_json()
    assert [job["id"] for job in listed["jobs"]] == [job_id]
    assert problem_fields(client.get("/v1/jobs?status=nope"), 422) == ["status"]


def succeeded(services: Services, job_id: str, *texts: str) -> None:
    """Run a queued job to success by hand, as a worker would, with these outputs."""
    store = services.store
    claim = store.claim("tiny", "hand", services.settings)
    assert (claim.job_id, claim.attempt) == (job_id, 1)
    update = Progress(job_id, 1, sum(map(len, texts)), texts, (0,) * len(texts))
    reasons = ("length",) * len(texts)
    assert store.finish([Final(update, JobStatus.SUCCEEDED, reasons)]) == [FlushOutcome.OK]


def test_a_continuation_takes_the_model_seed_samples_and_random_stream_of_its_job(
    client: FlaskClient, services: Services
) -> None:
    first = post(client, {"model": "tiny", "seed": "the ", "n": 2, "length": 5})
    first_id = first.get_json()["id"]
    succeeded(services, first_id, "abcde", "fghij")
    second = post(client, {"continue_from": first_id, "length": 7, "temperature": 0.3})
    assert second.status_code == 201, second.get_json()
    body = second.get_json()
    assert body["input"]["continue_from"] == first_id and body["input"]["seed"] == "the "
    assert body["random_seed"] == first.get_json()["random_seed"] and body["model"] == "tiny"
    assert body["progress"] == {"done": 0, "total": 14} and body["output"] == ["", ""]
    assert services.store.prefix(body["id"]) == ("abcde", "fghij")
    # A chain goes on from the whole text so far.
    succeeded(services, body["id"], "klmnopq", "rstuvwx")
    third = post(client, {"continue_from": body["id"], "length": 3}).get_json()
    assert services.store.prefix(third["id"]) == ("abcdeklmnopq", "fghijrstuvwx")


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        ({"seed": "other"}, ["seed"]),
        ({"random_seed": 1}, ["random_seed"]),
        ({"n": 2}, ["n"]),
        ({"model": "tiny", "seed": "x", "random_seed": 3}, ["seed", "random_seed"]),
    ],
)
def test_a_continuation_refuses_what_it_takes_from_its_job(
    client: FlaskClient, services: Services, extra: dict[str, Any], fields: list[str]
) -> None:
    source = post(client, {"model": "tiny", "seed": "the ", "random_seed": 9}).get_json()["id"]
    succeeded(services, source, "abc")
    response = post(client, {"continue_from": source, **extra})
    assert problem_fields(response, 422) == fields


def test_only_a_succeeded_job_of_the_caller_can_be_continued(client: FlaskClient) -> None:
    queued = post(client, {"model": "tiny"}).get_json()["id"]
    for job_id, says in [(queued, "is queued"), ("no-such-job", "no job")]:
        response = post(client, {"continue_from": job_id})
        assert problem_fields(response, 422) == ["continue_from"]
        assert says in response.get_json()["errors"][0]["message"]
