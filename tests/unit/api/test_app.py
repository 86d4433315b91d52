"""The app in-process: health, readiness, the OpenAPI document, models, framework errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from api.problems import PROBLEM_JSON
from api.services import Services
from shared import metrics
from shared.engine.registry import ModelRegistry
from shared.jobs.records import JobStatus
from shared.webhooks.events import WebhookEvent
from tests.conftest import TINY_MODELS, TINY_VOCAB
from worker import predictions


def test_healthz_says_ok(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_needs_a_live_worker(client: FlaskClient, redis_client: redis.Redis) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503 and response.mimetype == PROBLEM_JSON
    assert response.get_json()["workers"] == 0
    metrics.heartbeat(redis_client, "unit-test@host", ttl_s=30)
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.get_json() == {"status": "ready", "redis": True, "workers": 1}
    finally:
        redis_client.delete(metrics.WORKER_PREFIX + "unit-test@host")
        redis_client.srem(metrics.WORKER_INDEX, "unit-test@host")


def openapi(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document: dict[str, Any] = response.get_json()
    return document


def test_the_openapi_document_is_valid(client: FlaskClient) -> None:
    document = openapi(client)
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert {"/v1/jobs", "/v1/jobs/{job_id}/cancel", "/generate", "/healthz"} <= set(
        document["paths"]
    )


def test_the_openapi_webhook_events_are_the_webhook_event_values(client: FlaskClient) -> None:
    schemas = openapi(client)["components"]["schemas"]
    events = [event.value for event in WebhookEvent]
    request_filter = schemas["JobRequest"]["properties"]["webhook_events_filter"]
    assert request_filter["items"]["enum"] == events
    assert schemas["Job"]["properties"]["webhook_events_filter"]["items"]["enum"] == events


def test_the_openapi_document_names_the_models_and_statuses(client: FlaskClient) -> None:
    schemas = openapi(client)["components"]["schemas"]
    assert schemas["JobRequest"]["properties"]["model"]["enum"] == list(TINY_MODELS)
    assert schemas["Job"]["properties"]["status"]["enum"] == [s.value for s in JobStatus]


def test_models_lists_the_tiny_models_with_their_properties(client: FlaskClient) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    models = response.get_json()["models"]
    assert [model["name"] for model in models] == list(TINY_MODELS)
    for model in models:
        assert model["vocab"] == TINY_VOCAB and model["vocab_size"] == len(TINY_VOCAB)
        assert model["layer_sizes"] == [32] and model["mode"] == "stateful"


def test_one_model_and_an_unknown_one(client: FlaskClient) -> None:
    assert client.get("/v1/models/tiny2").get_json()["name"] == "tiny2"
    missing = client.get("/v1/models/no-such-model")
    assert missing.status_code == 404 and missing.mimetype == PROBLEM_JSON


@pytest.fixture
def predicting_worker(redis_client: redis.Redis, model_dir: Path) -> Iterator[None]:
    """Answer predictions for `tiny` as a generation worker does, in a thread."""
    models = ModelRegistry(model_dir)
    stopping = threading.Event()
    server = threading.Thread(
        target=predictions.serve,
        args=(redis_client, ["tiny"], lambda name, _version: models.get(name), stopping),
    )
    metrics.heartbeat(redis_client, "predictor@host", ttl_s=30, batches={"tiny": {}})
    server.start()
    yield
    stopping.set()
    server.join()
    redis_client.delete(metrics.WORKER_PREFIX + "predictor@host")


def test_predict_ranks_the_next_characters(client: FlaskClient, predicting_worker: None) -> None:
    response = client.post("/v1/models/tiny/predict", json={"seed": "the", "top": 3})
    assert response.status_code == 200
    ranked = response.get_json()["probabilities"]
    assert len(ranked) == 3 and ranked[0]["probability"] >= ranked[-1]["probability"]
    bad = client.post("/v1/models/tiny/predict", json={"seed": "Æ"})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "seed"


def test_predict_without_a_worker_is_a_503(client: FlaskClient) -> None:
    response = client.post("/v1/models/tiny/predict", json={"seed": "the"})
    assert response.status_code == 503 and response.mimetype == PROBLEM_JSON
    assert response.get_json()["type"].endswith("no-worker")


def test_predict_unanswered_is_a_504(
    client: FlaskClient, services: Services, redis_client: redis.Redis
) -> None:
    # A worker that beats but never answers.
    services.settings = services.settings.model_copy(update={"predict_timeout_s": 0.2})
    metrics.heartbeat(redis_client, "silent@host", ttl_s=30, batches={"tiny": {}})
    try:
        response = client.post("/v1/models/tiny/predict", json={"seed": "the"})
    finally:
        redis_client.delete(metrics.WORKER_PREFIX + "silent@host")
    assert response.status_code == 504 and response.get_json()["type"].endswith("predict-timeout")


def test_framework_errors_are_problems_too(client: FlaskClient) -> None:
    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and missing.mimetype == PROBLEM_JSON
    wrong_method = client.delete("/v1/jobs")
    assert wrong_method.status_code == 405 and wrong_method.mimetype == PROBLEM_JSON
    assert "POST" in wrong_method.headers["Allow"]
