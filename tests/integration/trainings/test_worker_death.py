"""A training worker killed mid-training: another training worker runs the training again.

Two training workers share the queue. The one running a training is frozen (so the training is
seen running, not ended), then SIGKILLed; the other puts the training back in the queue once
the heartbeat lapses, trains it from its first epoch, and registers the model, which a
generation worker then serves.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis

from shared.jobs.records import JobTTLs
from shared.settings import Settings
from shared.trainings.store import TrainingStore
from tests.conftest import wait_for
from tests.integration.conftest import (
    ApiHandle,
    ServiceProcess,
    StartApi,
    StartTrainingWorker,
    StartWorker,
)
from tests.integration.trainings.test_trainings import (
    CORPUS,
    KEYS,
    TINY,
    TRAIN_TIMEOUT_S,
    wait_training,
)


@pytest.fixture(scope="module")
def trainers(start_training_worker: StartTrainingWorker) -> list[ServiceProcess]:
    """Start two training workers."""
    return [start_training_worker(training_progress_interval_s=0.05) for _ in range(2)]


@pytest.fixture(scope="module")
def stack(
    start_api: StartApi, start_worker: StartWorker, trainers: list[ServiceProcess]
) -> ApiHandle:
    """Start a generation worker for uploads and the API, after the training workers."""
    start_worker(worker_models="tiny")
    return start_api(api_keys=KEYS)


def test_a_training_whose_worker_dies_is_trained_again_by_another(
    stack: ApiHandle, trainers: list[ServiceProcess], redis_client: redis.Redis
) -> None:
    alice = stack.client("key-alice", timeout=60.0)
    store = TrainingStore(redis_client, JobTTLs.from_settings(Settings()))
    body = {**TINY, "name": "phoenix", "text": CORPUS, "epochs": 3, "batch_size": 8}
    created = alice.post("/v1/trainings", json=body)
    assert created.status_code == 201, created.text
    training_id = created.json()["id"]

    def running_worker() -> str | None:
        found = store.get(training_id)
        if found is None or found.status.value != "running" or found.progress.step == 0:
            return None
        return found.worker

    worker_id = wait_for(running_worker, TRAIN_TIMEOUT_S, "the training to make progress")
    [doomed] = [t for t in trainers if worker_id.startswith(t.log_path.stem + "@")]
    [survivor] = [t for t in trainers if t is not doomed]
    doomed.signal(signal.SIGSTOP)
    frozen = store.get(training_id)
    assert frozen is not None and frozen.status.value == "running", frozen
    assert frozen.attempts == 1
    doomed.kill()
    killed_at = time.monotonic()

    def taken_up_again() -> bool:
        found = store.get(training_id)
        return found is not None and found.attempts == 2

    wait_for(taken_up_again, TRAIN_TIMEOUT_S, "another training worker to take it up")
    print(f"\ntraining taken up again {time.monotonic() - killed_at:.1f} s after the kill")
    ended = wait_training(alice, training_id, TRAIN_TIMEOUT_S)
    assert ended["status"] == "succeeded", ended
    assert ended["attempts"] == 2
    assert [m["epoch"] for m in ended["metrics"]] == [1, 2, 3]  # all of the second run's
    assert f"training {training_id} requeued" in survivor.log()
    job = alice.post(
        "/v1/jobs",
        json={"model": "phoenix", "seed": "the ", "length": 40, "temperature": 0},
        headers={"Prefer": "wait=60"},
    )
    assert job.status_code == 201, job.text
    assert job.json()["status"] == "succeeded", job.json()
