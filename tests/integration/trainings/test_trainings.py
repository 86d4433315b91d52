"""Trainings end to end: real API, real training and generation workers, real Redis.

A one-epoch training of a tiny network on a few KB of text is submitted over HTTP, reports
progress and metrics, registers its model, and a generation job runs on that model at once.
A canceled training ends `canceled` and leaves no model; another key never sees a training.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import BIN, wait_for
from tests.integration.conftest import (
    ApiHandle,
    ServiceProcess,
    StartApi,
    StartTrainingWorker,
    StartWebhookWorker,
    StartWorker,
    WorkerHandle,
)
from tests.webhook_receiver import SECRET_A, Receiver

KEYS = "alice:key-alice,bob:key-bob"
CORPUS = "the quick brown fox jumps over the lazy dog. " * 80  # 3.6 KB, 28 characters
TINY = {"layers": [32], "epochs": 1, "seq_len": 16, "batch_size": 32, "validation_split": 0.1}
TRAIN_TIMEOUT_S = 240.0  # TensorFlow's first import and one epoch on a shared 2-core machine


@pytest.fixture(scope="module")
def worker(start_worker: StartWorker) -> WorkerHandle:
    """Start a generation worker for `tiny` and every uploaded (or trained) model."""
    return start_worker(worker_models="tiny", worker_slots=4)


@pytest.fixture(scope="module")
def trainer(start_training_worker: StartTrainingWorker) -> ServiceProcess:
    """Start the training worker."""
    return start_training_worker(training_progress_interval_s=0.05)


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    """Start one webhook receiver for the module."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def webhook_worker(start_webhook_worker: StartWebhookWorker) -> ServiceProcess:
    """Start the webhook worker, signing with one secret."""
    return start_webhook_worker(webhook_allow_private=True, webhook_secrets=[SECRET_A])


@pytest.fixture(scope="module")
def stack(
    start_api: StartApi,
    worker: WorkerHandle,
    trainer: ServiceProcess,
    webhook_worker: ServiceProcess,
) -> ApiHandle:
    """Start the API with two keys, after the workers."""
    return start_api(api_keys=KEYS, default_model="tiny", webhook_allow_private=True)


@pytest.fixture
def alice(stack: ApiHandle, redis_client: redis.Redis) -> httpx.Client:
    """Return key alice's client over a flushed store."""
    return stack.client("key-alice", timeout=60.0)


def wait_training(client: httpx.Client, training_id: str, timeout: float) -> dict[str, Any]:
    """Wait until a training is final; return it."""

    def final() -> dict[str, Any] | None:
        found: dict[str, Any] = client.get(f"/v1/trainings/{training_id}").json()
        return found if found["status"] not in ("queued", "running") else None

    result: dict[str, Any] = wait_for(final, timeout, f"training {training_id} to end")
    return result


def test_one_epoch_training_registers_a_servable_model(
    alice: httpx.Client, stack: ApiHandle
) -> None:
    created = alice.post("/v1/trainings", json={"name": "fox", "text": CORPUS, **TINY})
    assert created.status_code == 201, created.text
    training = created.json()
    assert created.headers["Location"].endswith(f"/v1/trainings/{training['id']}")
    assert training["status"] in ("queued", "running")
    assert stack.client("key-bob").get(f"/v1/trainings/{training['id']}").status_code == 404

    ended = wait_training(alice, training["id"], TRAIN_TIMEOUT_S)
    assert ended["status"] == "succeeded", ended
    assert ended["progress"]["epoch"] == ended["progress"]["epochs"] == 1
    assert ended["progress"]["step"] == ended["progress"]["steps"] > 0
    [epoch] = ended["metrics"]
    assert epoch["epoch"] == 1 and 0 < epoch["loss_bpc"] < 8 and epoch["val_loss_bpc"] > 0

    job = alice.post(
        "/v1/jobs",
        json={"model": "fox", "seed": "the ", "length": 40, "temperature": 0},
        headers={"Prefer": "wait=60"},
    )
    assert job.status_code == 201, job.text
    assert job.json()["status"] == "succeeded", job.json()
    assert len(job.json()["output"]) == 40

    taken = alice.post("/v1/trainings", json={"name": "fox", "text": CORPUS, **TINY})
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["field"] == "name"


def test_a_canceled_training_leaves_no_model(alice: httpx.Client) -> None:
    body = {
        **TINY,
        "name": "canceled",
        "text": CORPUS,
        "epochs": 100,
        "seq_len": 8,
        "batch_size": 1,
    }
    answer = alice.post("/v1/trainings", json=body)
    assert answer.status_code == 201, answer.text
    training = answer.json()

    def running() -> bool:
        found = alice.get(f"/v1/trainings/{training['id']}").json()
        return found["status"] == "running" and found["progress"]["step"] > 0

    wait_for(running, TRAIN_TIMEOUT_S, "the training to report steps")
    assert alice.post(f"/v1/trainings/{training['id']}/cancel").status_code == 202
    ended = wait_training(alice, training["id"], 60.0)
    assert ended["status"] == "canceled", ended
    assert alice.get("/v1/models/canceled").status_code == 404
    assert alice.post("/v1/jobs", json={"model": "canceled", "seed": "a"}).status_code == 422


def test_the_cli_creates_and_follows_a_training_then_shows_it(
    stack: ApiHandle, redis_client: redis.Redis, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    server = ["--url", stack.url, "--api-key", "key-alice"]
    create = [
        str(BIN / "lstmgen"), "trainings", "create", "cli-fox", str(corpus), *server,
        "--layers", "32", "--epochs", "1", "--seq-len", "16", "--batch-size", "32",
        "--follow", "--json",
    ]  # fmt: skip
    run = subprocess.run(create, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S)
    assert run.returncode == 0, run.stderr
    training = json.loads(run.stdout)
    assert training["status"] == "succeeded" and len(training["metrics"]) == 1
    assert "epoch 1/1" in run.stderr  # the bar

    status = [str(BIN / "lstmgen"), "trainings", "status", training["id"], *server]
    shown = subprocess.run(status, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout and "epoch 1: loss" in shown.stdout

    cancel = [str(BIN / "lstmgen"), "trainings", "cancel", "nope", *server]
    missing = subprocess.run(cancel, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "404" in missing.stderr


def test_a_waited_training_sends_signed_start_and_completed_webhooks(
    alice: httpx.Client, hooks: Receiver
) -> None:
    body = {**TINY, "name": "hooked", "text": CORPUS, "webhook": hooks.url("/training")}
    waited = alice.post("/v1/trainings", json=body, headers={"Prefer": "wait=50"})
    assert waited.status_code == 201 and waited.headers["Preference-Applied"] == "wait=50"
    training = waited.json()
    assert training["status"] == "succeeded"  # the create waited for the end
    start, completed = hooks.wait_for(2, "/training", timeout=TRAIN_TIMEOUT_S)
    first: Any = start.verify(SECRET_A)
    last: Any = completed.verify(SECRET_A)
    assert (first["event"], first["kind"], first["id"]) == ("start", "training", training["id"])
    assert first["status"] == "running"
    assert (last["event"], last["status"]) == ("completed", "succeeded")
    assert last["metrics"] == wait_training(alice, training["id"], 10.0)["metrics"]


def test_invalid_trainings_name_the_field(alice: httpx.Client) -> None:
    for body, field in (
        ({**TINY, "text": CORPUS}, "name"),
        ({**TINY, "name": "x", "text": CORPUS, "epochs": 0}, "epochs"),
        ({**TINY, "name": "x", "text": CORPUS, "base_model": "nope"}, "base_model"),
        ({**TINY, "name": "x", "text": CORPUS, "webhook": "ftp://example.com/"}, "webhook"),
    ):
        answer = alice.post("/v1/trainings", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert field in [e["field"] for e in answer.json()["errors"]]


def test_schemathesis_finds_no_server_error_on_the_training_operations(
    stack: ApiHandle, redis_client: redis.Redis, tmp_path: Path
) -> None:
    command = [
        str(BIN / "schemathesis"), "run", f"{stack.url}/openapi.json",
        "--header", "Authorization: Bearer key-bob",
        "--include-operation-id", "createTraining",
        "--include-operation-id", "getTraining",
        "--include-operation-id", "cancelTraining",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "25",
        "--seed", "20261202",
        "--workers", "1",
        "--request-timeout", "60",
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--no-color",
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"{output[-8000:]}\nAPI log:\n{stack.log()[-4000:]}"
    assert " passed" in output, output[-4000:]
