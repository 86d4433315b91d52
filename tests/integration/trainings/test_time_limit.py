"""A training past LSTMGEN_TRAINING_TIME_LIMIT_S ends `timed_out` and registers nothing."""

from __future__ import annotations

import httpx
import pytest
import redis

from tests.integration.conftest import ApiHandle, ServiceProcess, StartApi, StartTrainingWorker
from tests.integration.trainings.test_trainings import CORPUS, KEYS, TINY, wait_training

LIMIT_S = 2.0  # far less than the 100 epochs of one-sequence batches asked for


@pytest.fixture(scope="module")
def stack(start_api: StartApi, start_training_worker: StartTrainingWorker) -> ApiHandle:
    """Start a training worker with a short time limit, then the API."""
    trainer: ServiceProcess = start_training_worker(training_time_limit_s=LIMIT_S)
    assert trainer.alive()
    return start_api(api_keys=KEYS)


def test_a_training_past_its_time_limit_times_out_and_leaves_no_model(
    stack: ApiHandle, redis_client: redis.Redis
) -> None:
    alice: httpx.Client = stack.client("key-alice", timeout=60.0)
    body = {**TINY, "name": "slow", "text": CORPUS, "epochs": 100, "seq_len": 8, "batch_size": 1}
    training = alice.post("/v1/trainings", json=body).json()
    ended = wait_training(alice, training["id"], 240.0)
    assert ended["status"] == "timed_out", ended
    assert "time limit" in ended["error"]
    assert ended["progress"]["step"] > 0
    assert alice.get("/v1/models/slow").status_code == 404
