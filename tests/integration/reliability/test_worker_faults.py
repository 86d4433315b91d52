"""Worker faults: a worker killed mid-job, a job that kills every worker, a duplicate delivery,
and, for contrast, a healthy job that runs longer than the visibility timeout.

Real Celery workers (their own process groups) over the session's redis-server, the API under
gunicorn, a webhook worker and a receiver on loopback. Workers use a visibility timeout of
seconds so the broker hands an unacknowledged job to another worker quickly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import wait_for
from tests.integration.conftest import (
    ApiHandle,
    StartApi,
    StartWebhookWorker,
    StartWorker,
    WorkerHandle,
)
from tests.integration.reliability.conftest import (
    FAST,
    VISIBILITY_S,
    broker_messages,
    calibrated_length,
    expected_texts,
    final_events,
    job_events,
    record,
)
from tests.integration.service.helpers import get_job, submit, wait_status
from tests.webhook_receiver import SECRET_A, Receiver

JOB_S = 1.5  # how long the jobs that get interrupted run: well inside the time limit
REDELIVERY_S = VISIBILITY_S + 60.0  # visibility timeout, restore sweep, worker start, generation
# A job no worker here can finish: it would need minutes, far past the time limit (TIME_LIMIT_S).
ENDLESS = 10_000_000


@pytest.fixture(scope="module")
def stack(start_api: StartApi, start_webhook_worker: StartWebhookWorker) -> ApiHandle:
    """Start a webhook worker and the API; tests start the generation workers they need."""
    start_webhook_worker(
        webhook_allow_private=True,
        webhook_secrets=[SECRET_A],
        webhook_retry_schedule="0.2,0.2,0.2",
    )
    return start_api(webhook_allow_private=True, max_length=ENDLESS)


def start_pair(start_worker: StartWorker, model: str) -> list[WorkerHandle]:
    """Start two workers sharing the queue of `model`, side by side."""
    workers = [start_worker(wait=False, worker_models=model, **FAST) for _ in range(2)]
    return [worker.wait_ready() for worker in workers]


def running_on(client: redis.Redis, job_id: str, attempt: int = 1) -> str | None:
    """Return the worker running this attempt of a job once it has made output, else None."""
    found = record(client, job_id)
    started = found.get("status") == "running" and found.get("attempts") == str(attempt)
    return found["worker"] if started and int(found.get("done", "0")) > 0 else None


def gave_up(worker: WorkerHandle, job_id: str) -> bool:
    """Return whether the worker's task of this job ended `gone` (not its attempt any more)."""
    # Celery logs each task's return value, the run's outcome, tagged with the job id.
    lines = worker.log().splitlines()
    return any(f"[{job_id}]" in line and line.endswith(": 'gone'") for line in lines)


def kill_mid_job(worker: WorkerHandle, client: redis.Redis, job_id: str, attempt: int) -> None:
    """SIGKILL a worker's process group while it runs this attempt of the job, and prove it."""
    # Stopped first: what Redis holds then is what the worker left at its death, so the check
    # shows the kill came before the job could end, not after.
    with worker.paused():
        found = record(client, job_id)
        assert (found["status"], found["attempts"]) == ("running", str(attempt)), found
        worker.kill()


def test_a_job_whose_worker_is_killed_finishes_once_on_another_worker(
    api: httpx.Client,
    start_worker: StartWorker,
    redis_client: redis.Redis,
    receiver: Receiver,
    model_dir: Path,
) -> None:
    workers = start_pair(start_worker, "tiny")
    length = calibrated_length(api, "tiny", JOB_S)
    job_id = submit(
        api,
        model="tiny",
        length=length,
        random_seed=7,
        webhook=receiver.url("/killed"),
        webhook_events_filter=["completed"],
    )["id"]
    first = wait_for(lambda: running_on(redis_client, job_id), 60, "the job to make output")
    victim = next(worker for worker in workers if worker.worker_id == first)
    survivor = next(worker for worker in workers if worker is not victim)
    kill_mid_job(victim, redis_client, job_id, 1)  # SIGKILL to the worker's process group

    job = wait_status(api, job_id, timeout=REDELIVERY_S)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert record(redis_client, job_id)["worker"] == survivor.worker_id
    assert job["output"] == expected_texts(model_dir, "tiny", length, [7])[0]
    assert final_events(redis_client, job_id) == ["succeeded"]
    wait_for(lambda: broker_messages(redis_client, job_id, "tiny") == 0, 30, "the ack")

    hooks = receiver.wait_for(1, "/killed", timeout=30)
    assert len({hook.headers["webhook-id"] for hook in hooks}) == 1
    for hook in hooks:
        body = hook.verify(SECRET_A)
        assert isinstance(body, dict)
        assert body["event"] == "completed" and body["id"] == job_id
        assert body["status"] == "succeeded" and body["output"] == job["output"]
    survivor.stop()


def test_a_job_that_kills_every_worker_fails_after_the_attempt_cap(
    api: httpx.Client, start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    settings: dict[str, Any] = {**FAST, "worker_models": "tiny2", "max_attempts": 2}
    job_id = submit(api, model="tiny2", length=ENDLESS)["id"]
    for attempt in (1, 2):
        worker = start_worker(**settings)
        wait_for(
            lambda: running_on(redis_client, job_id, attempt) == worker.worker_id,  # noqa: B023
            REDELIVERY_S,
            f"attempt {attempt} to run on {worker.hostname}",
        )
        kill_mid_job(worker, redis_client, job_id, attempt)  # it "kills its worker" every time

    last = start_worker(**settings)
    job = wait_status(api, job_id, timeout=REDELIVERY_S)
    assert job["status"] == "failed", job
    assert job["error"]["type"] == "worker_lost"
    assert job["error"]["message"] == "worker lost 2 times while running this job"
    assert job["attempts"] == 2  # the third delivery ended it without running it
    assert final_events(redis_client, job_id) == ["failed"]
    wait_for(lambda: broker_messages(redis_client, job_id, "tiny2") == 0, 30, "the ack")
    assert last.alive()
    last.stop()


def test_a_duplicate_delivery_yields_one_result(
    api: httpx.Client, start_worker: StartWorker, redis_client: redis.Redis, model_dir: Path
) -> None:
    workers = start_pair(start_worker, "tiny3")
    length = calibrated_length(api, "tiny3", JOB_S)
    job_id = submit(api, model="tiny3", length=length, random_seed=5)["id"]
    first = wait_for(lambda: running_on(redis_client, job_id), 60, "the job to make output")
    paused = next(worker for worker in workers if worker.worker_id == first)
    other = next(worker for worker in workers if worker is not paused)
    # A stalled worker (SIGSTOP) outlives the visibility timeout: the broker delivers the job
    # again, to the other worker, while the first still holds it. Stopped, the first cannot
    # finish its attempt, and once its last BRPOP has timed out in Redis it cannot take the
    # redelivered message either.
    with paused.paused():
        found = record(redis_client, job_id)
        assert (found["status"], found["attempts"]) == ("running", "1"), found
        wait_for(lambda: not paused.blocked_in_redis(redis_client), 10, "no pending BRPOP")
        job = wait_status(api, job_id, timeout=REDELIVERY_S)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert record(redis_client, job_id)["worker"] == other.worker_id

    # The first worker wakes up with its stale attempt (past its time limit by now): the
    # compare-and-set refuses whatever it tries to write, and it lets the job go.
    wait_for(lambda: gave_up(paused, job_id), 30, "the stale attempt to give up")
    assert paused.alive()
    assert get_job(api, job_id) == job
    assert job["output"] == expected_texts(model_dir, "tiny3", length, [5])[0]
    events = job_events(redis_client, job_id)
    assert final_events(redis_client, job_id) == ["succeeded"]
    assert [event for event, _ in events].count("done") == 1
    running = [data for event, data in events if data.get("status") == "running"]
    assert [data["attempt"] for data in running] == [1, 2]
    streamed = "".join(data["text"] for event, data in events if event == "output")
    assert streamed == job["output"]  # no chunk written twice
    wait_for(lambda: broker_messages(redis_client, job_id, "tiny3") == 0, 30, "the ack")
    assert json.loads(record(redis_client, job_id)["finish_reason"]) == ["length"]
    for worker in workers:
        worker.stop()


def test_a_job_longer_than_the_visibility_timeout_stays_with_its_live_worker(
    api: httpx.Client, start_worker: StartWorker, redis_client: redis.Redis, model_dir: Path
) -> None:
    # Two workers, and a job running six visibility timeouts: without its worker renewing the
    # delivery at every heartbeat, the broker would hand it to the other worker (attempt 2).
    settings: dict[str, Any] = {
        **FAST,
        "worker_models": "tiny",
        "visibility_timeout_s": 1,
        "worker_heartbeat_s": 0.25,
        "job_time_limit_s": 120.0,
    }
    workers = [start_worker(wait=False, **settings) for _ in range(2)]
    for worker in workers:
        worker.wait_ready()
    # The length comes from a speed estimate, which a machine whose load drops meanwhile
    # outruns: a job done in less than three timeouts shows nothing wrong but proves too little,
    # so the next one is twice as long, until one runs long enough.
    length = calibrated_length(api, "tiny", 6.0, longest=ENDLESS // 8)
    for _ in range(4):
        job_id = submit(api, model="tiny", length=length, random_seed=11)["id"]
        job = wait_status(api, job_id, timeout=120)
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1
        assert job["output"] == expected_texts(model_dir, "tiny", length, [11])[0]
        running = [data for _, data in job_events(redis_client, job_id) if data.get("status")]
        assert [data.get("attempt") for data in running if data["status"] == "running"] == [1]
        wait_for(
            lambda: broker_messages(redis_client, job_id, "tiny") == 0,  # noqa: B023
            30,
            "the ack",
        )
        if job["metrics"]["generation_time_s"] > 3.0:
            break
        length *= 2
    assert job["metrics"]["generation_time_s"] > 3.0  # it did outlive the timeout several times
    for worker in workers:
        worker.stop()
