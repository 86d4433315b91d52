"""Deadlines: the per-job time limit, the queue TTL, and a cancel while queued.

A worker with one slot stays busy with a long job, so the next job really waits in the broker's
queue; the busy job is canceled only once the waiting job's fate is sealed.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import wait_for
from tests.integration.conftest import ApiHandle, StartApi, StartWorker, WorkerHandle
from tests.integration.reliability.conftest import (
    broker_messages,
    expected_texts,
    final_events,
    job_events,
    record,
)
from tests.integration.service.helpers import get_job, submit, wait_progress, wait_status

TIME_LIMIT_S = 1.0
QUEUE_TTL_S = 1.0
# Characters: minutes of work, longer than any wait here (30 s at most) lets a job run, so a
# busy job is still running whenever a test looks, even on a fast machine.
ENDLESS = 10_000_000


@pytest.fixture(scope="module")
def stack(start_api: StartApi) -> ApiHandle:
    """Start the API once for the module, allowing endless jobs."""
    return start_api(max_length=ENDLESS)


@pytest.fixture(scope="module")
def workers(start_worker: StartWorker) -> dict[str, WorkerHandle]:
    """Start a worker with a short time limit and a one-slot worker with a short queue TTL."""
    started = {
        "tiny3": start_worker(wait=False, worker_models="tiny3", job_time_limit_s=TIME_LIMIT_S),
        "tiny2": start_worker(
            wait=False,
            worker_models="tiny2",
            worker_slots=1,
            queue_ttl_s=QUEUE_TTL_S,
            worker_heartbeat_s=0.25,  # the heartbeat also expires stale queued jobs
        ),
    }
    return {model: worker.wait_ready() for model, worker in started.items()}


@pytest.fixture
def api(
    stack: ApiHandle, workers: dict[str, WorkerHandle], redis_client: redis.Redis
) -> httpx.Client:
    """Return a client of the API over a flushed job store, the workers up."""
    return stack.client()


def never_started(client: redis.Redis, job: dict[str, object]) -> None:
    """Assert that no worker ever ran a job."""
    assert job["started_at"] is None and job["attempts"] == 0 and job["output"] == ""
    assert "running" not in [data["status"] for _, data in job_events(client, str(job["id"]))]


def test_a_job_past_its_time_limit_ends_timed_out_with_its_partial_output(
    api: httpx.Client, redis_client: redis.Redis, model_dir: Path
) -> None:
    job_id = submit(api, model="tiny3", length=ENDLESS, random_seed=21)["id"]
    job = wait_status(api, job_id, timeout=30)
    assert job["status"] == "timed_out", job
    assert job["error"]["type"] == "time_limit"
    assert f"{TIME_LIMIT_S:g} s limit" in job["error"]["message"]
    output = job["output"]
    assert 0 < len(output) < ENDLESS and job["progress"]["done"] == len(output)
    # The partial output is the real beginning of the generation, not a fragment of it.
    assert output == expected_texts(model_dir, "tiny3", len(output), [21])[0]
    assert TIME_LIMIT_S <= job["metrics"]["generation_time_s"] < TIME_LIMIT_S + 2.0
    assert final_events(redis_client, job_id) == ["timed_out"]
    wait_for(lambda: broker_messages(redis_client, job_id, "tiny3") == 0, 30, "the ack")


def test_a_job_never_started_within_its_ttl_expires_and_never_runs(
    api: httpx.Client, redis_client: redis.Redis
) -> None:
    busy = submit(api, model="tiny2", length=ENDLESS)["id"]
    wait_progress(api, busy, 1)
    stale = submit(api, model="tiny2", length=50)["id"]
    job = wait_status(api, stale, timeout=30)  # expired by the worker's heartbeat sweep
    assert job["status"] == "expired", job
    assert job["error"]["type"] == "expired"
    assert get_job(api, busy)["status"] == "running"  # the only slot never freed up
    assert broker_messages(redis_client, stale, "tiny2") == 1  # still waiting in the broker

    api.post(f"/v1/jobs/{busy}/cancel")
    assert wait_status(api, busy, timeout=30)["status"] == "canceled"
    wait_for(lambda: broker_messages(redis_client, stale, "tiny2") == 0, 30, "delivery")
    after = get_job(api, stale)
    assert after["status"] == "expired" and after["completed_at"] == job["completed_at"]
    never_started(redis_client, after)
    assert final_events(redis_client, stale) == ["expired"]


def test_a_job_canceled_while_queued_never_starts(
    api: httpx.Client, redis_client: redis.Redis
) -> None:
    busy = submit(api, model="tiny2", length=ENDLESS)["id"]
    wait_progress(api, busy, 1)
    queued = submit(api, model="tiny2", length=50)["id"]
    canceled = api.post(f"/v1/jobs/{queued}/cancel").json()
    assert canceled["status"] == "canceled", canceled
    assert broker_messages(redis_client, queued, "tiny2") == 1  # its message is still queued

    api.post(f"/v1/jobs/{busy}/cancel")
    ended = wait_status(api, busy, timeout=30)
    assert ended["status"] == "canceled" and ended["output"]  # keeps its partial output
    wait_for(lambda: broker_messages(redis_client, queued, "tiny2") == 0, 30, "delivery")
    job = get_job(api, queued)
    assert job["status"] == "canceled"
    never_started(redis_client, job)
    assert final_events(redis_client, queued) == ["canceled"]
    assert record(redis_client, queued).get("worker") is None
