"""Per-key limits in-process: 429s that name the limit, only for that key; `/v1/usage`; metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.problems import PROBLEM_JSON
from api.services import EXTENSION, Services
from shared.celery_app import generation_queue
from shared.settings import Settings

ALICE = {"Authorization": "Bearer key-a"}  # named `alice`
BOB = {"Authorization": "Bearer key-b"}  # unnamed: called by a short hash


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Iterator[Flask]:
    """The app with two keys; alice may queue 2 jobs and submit 3 at once, then 1 a second."""
    limits = {"alice": {"max_queued": 2, "submit_rate": 1, "submit_burst": 3, "weight": 2}}
    keyed = settings.model_copy(update={"api_keys": ["alice:key-a", "key-b"], "key_limits": limits})
    app = create_app(keyed)
    yield app
    found = app.extensions[EXTENSION]
    assert isinstance(found, Services)
    redis_client.delete(generation_queue("tiny"))
    found.celery.close()
    found.store.client.close()


def post(client: FlaskClient, headers: dict[str, str], **body: object) -> int:
    response = client.post("/v1/jobs", json={"model": "tiny", **body}, headers=headers)
    return response.status_code


def test_a_key_past_its_queued_limit_gets_429_naming_it_and_no_other_key_does(
    client: FlaskClient,
) -> None:
    assert [post(client, ALICE) for _ in range(2)] == [201, 201]
    response = client.post("/v1/jobs", json={"model": "tiny"}, headers=ALICE)
    assert response.status_code == 429 and response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert body["limit"] == "max_queued" and "'alice'" in body["detail"]
    assert int(response.headers["Retry-After"]) >= 1
    assert [post(client, BOB) for _ in range(5)] == [201] * 5


def test_a_key_past_its_submission_rate_gets_429_with_the_wait(client: FlaskClient) -> None:
    codes = [post(client, ALICE, length=1) for _ in range(4)]
    assert codes[:2] == [201, 201] and codes[3] == 429  # the third: queued limit or rate
    response = client.post("/v1/jobs", json={"model": "tiny"}, headers=ALICE)
    assert response.get_json()["limit"] == "submit_rate"
    assert response.headers["Retry-After"] == "1"


def test_usage_shows_the_callers_own_jobs_and_limits(client: FlaskClient) -> None:
    post(client, ALICE, priority="high")
    post(client, BOB, n=2)
    post(client, BOB)
    alice = client.get("/v1/usage", headers=ALICE).get_json()
    assert alice == {
        "key": "alice",
        "queued": 1,
        "running_jobs": 0,
        "running_samples": 0,
        "limits": {
            "max_queued": 2,
            "max_running_samples": 0,
            "submit_rate": 1.0,
            "submit_burst": 3,
            "weight": 2.0,
        },
    }
    bob = client.get("/v1/usage", headers=BOB).get_json()
    assert bob["queued"] == 2 and bob["limits"]["max_queued"] == 1000
    assert len(bob["key"]) == 8 and "key-b" not in str(bob)
    assert client.get("/v1/usage").status_code == 401


def test_priority_is_checked_and_shown(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json={"model": "tiny", "priority": "urgent"}, headers=BOB)
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "priority"
    job = client.post("/v1/jobs", json={"model": "tiny", "priority": "low"}, headers=BOB)
    assert job.get_json()["input"]["priority"] == "low"


def test_metrics_show_each_key_by_name_never_the_key(client: FlaskClient) -> None:
    post(client, ALICE)
    post(client, ALICE)
    post(client, ALICE)  # refused: max_queued
    text = client.get("/metrics").get_data(as_text=True)
    assert 'lstmgen_key_jobs_queued{key="alice"} 2.0' in text
    assert 'lstmgen_key_rejections_total{key="alice",limit="max_queued"} 1.0' in text
    assert "key-a" not in text and "key-b" not in text
