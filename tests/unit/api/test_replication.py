"""A 201 waits for `redis_min_replicas` replicas: over a Redis without replicas it is a 503
that names the job (or training), and a retry with the same Idempotency-Key finds the same job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask import Flask

from api.app import create_app
from api.services import EXTENSION, Services
from shared.settings import Settings


@pytest.fixture
def lonely_app(settings: Settings, redis_client: redis.Redis) -> Iterator[Flask]:
    """Return an app that wants one replica, over the session's Redis, which has none."""
    app = create_app(
        settings.model_copy(update={"redis_min_replicas": 1, "redis_replica_timeout_s": 0.2})
    )
    yield app
    found = app.extensions[EXTENSION]
    assert isinstance(found, Services)
    found.celery.close()
    found.store.client.close()


def test_no_201_without_the_replicas(lonely_app: Flask, redis_client: redis.Redis) -> None:
    client = lonely_app.test_client()
    headers = {"Idempotency-Key": "replicated-once"}
    first = client.post("/v1/jobs", json={"length": 5}, headers=headers)
    assert first.status_code == 503
    assert first.content_type == "application/problem+json"
    body = first.get_json()
    assert body["type"].endswith("/not-replicated")
    assert "0 of the 1 replicas" in body["detail"]
    assert int(first.headers["Retry-After"]) >= 1
    # The job is stored, not thrown away: it may still run, and a retry names the same one.
    assert redis_client.exists(f"lstmgen:job:{body['job_id']}")
    again = client.post("/v1/jobs", json={"length": 5}, headers=headers)
    assert again.status_code == 503
    assert again.get_json()["job_id"] == body["job_id"]


def test_no_training_201_without_the_replicas(lonely_app: Flask, redis_client: redis.Redis) -> None:
    body = {"name": "lonely", "text": "abc " * 200, "epochs": 1, "layers": [8]}
    answer = lonely_app.test_client().post("/v1/trainings", json=body)
    assert answer.status_code == 503, answer.get_json()
    problem = answer.get_json()
    assert problem["type"].endswith("/not-replicated") and "0 of the 1" in problem["detail"]
    assert redis_client.exists(f"lstmgen:training:{problem['training_id']}")


def test_no_wait_by_default(services: Services) -> None:
    assert services.settings.redis_min_replicas == 0
    assert services.store.replicated(0, 0.1) == 0  # WAIT 0 answers at once
