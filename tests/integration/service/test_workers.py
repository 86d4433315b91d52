"""Workers: sharing a queue, deadlines, queued cancels, duplicate deliveries, warm shutdown."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
import redis

from shared.celery_app import GENERATE_TASK, generation_queue, make_celery
from shared.engine.batch import generate
from shared.engine.registry import ModelRegistry
from shared.engine.sampling import SamplingParams
from shared.jobs.keys import job_key
from shared.settings import Settings
from tests.conftest import wait_for
from tests.integration.conftest import (
    ApiHandle,
    StartApi,
    StartWorker,
    WorkerHandle,
    job_record,
    wait_record,
    wait_running,
)
from tests.integration.service.helpers import get_job, submit, wait_status

# Jobs the tiny model needs seconds for, against the milliseconds between a test seeing one
# running and stopping or signalling its worker. LONG jobs are compared whole with the engine's
# text; ENDLESS ones are never meant to finish.
LONG = 2_000_000
ENDLESS = 10_000_000


@pytest.fixture(scope="module")
def stack(start_api: StartApi) -> ApiHandle:
    """Start the API once for the module (jobs up to ENDLESS); tests start their workers."""
    return start_api(max_length=ENDLESS)


@pytest.fixture(scope="module")
def pair(start_worker: StartWorker) -> list[WorkerHandle]:
    """Start two workers that share the queue of `tiny`."""
    return [start_worker(worker_models="tiny", worker_slots=2) for _ in range(2)]


def expected_text(model_dir: Path, seed: str, length: int, random_seed: int) -> str:
    """Return what the engine generates alone for a tiny-model job."""
    model = ModelRegistry(model_dir).get("tiny")
    params = SamplingParams(length=length, temperature=model.defaults.temperature)
    return generate(model, seed, params, random_seed=random_seed).text


def test_two_workers_share_one_queue(
    api: httpx.Client, pair: list[WorkerHandle], redis_client: redis.Redis
) -> None:
    ids = [submit(api, model="tiny", length=3000)["id"] for _ in range(12)]
    jobs = [wait_status(api, job_id) for job_id in ids]
    assert {job["status"] for job in jobs} == {"succeeded"}
    assert {job["attempts"] for job in jobs} == {1}
    served_by = {redis_client.hget(job_key(job_id), "worker") for job_id in ids}
    assert served_by == {worker.worker_id for worker in pair}


def test_a_queued_job_canceled_never_starts_and_an_old_one_expires(
    api: httpx.Client, start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    canceled = submit(api, model="tiny2", length=50)["id"]
    stale = submit(api, model="tiny2", length=50)["id"]
    assert api.post(f"/v1/jobs/{canceled}/cancel").json()["status"] == "canceled"
    # No worker runs yet: `stale` is past the queue TTL of 0.2 s, by Redis's clock (the one the
    # claim compares with), before the worker that could start it exists.
    queued_at = float(job_record(redis_client, stale)["queued_at"])
    wait_for(lambda: redis_seconds(redis_client) - queued_at > 0.2, 10, "the TTL to pass")
    worker = start_worker(worker_models="tiny2", queue_ttl_s=0.2)
    try:
        expired = wait_status(api, stale, timeout=30)
        assert expired["status"] == "expired" and expired["started_at"] is None
        assert expired["error"]["type"] == "expired"
        wait_for(lambda: redis_client.llen(generation_queue("tiny2")) == 0, 30, "queue drained")
        wait_for(lambda: redis_client.hlen("unacked") == 0, 30, "messages acknowledged")
        job = get_job(api, canceled)
        assert job["status"] == "canceled" and job["started_at"] is None
        assert job["output"] == "" and job["attempts"] == 0
    finally:
        worker.stop()


def test_a_job_past_its_time_limit_ends_timed_out_with_partial_output(
    api: httpx.Client, start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    worker = start_worker(worker_models="tiny3", job_time_limit_s=1.0)
    try:
        job_id = submit(api, model="tiny3", length=ENDLESS)["id"]
        wait_running(redis_client, job_id)
        running_since = time.monotonic()  # the worker started the job before this
        # ENDLESS characters take the tiny model many seconds: stopped, the worker cannot finish
        # the job while its time limit runs out, and it checks the limit at the first flush after
        # it continues, long before it could step through the characters left.
        with worker.paused():
            wait_for(lambda: time.monotonic() - running_since > 1.0, 10, "the time limit")
        job = wait_status(api, job_id, timeout=30)
    finally:
        worker.stop()
    assert job["status"] == "timed_out" and job["error"]["type"] == "time_limit"
    assert 0 < len(job["output"]) < ENDLESS
    # At most a few flush intervals (0.1 s) past the limit, even though the pause above ends
    # up to a poll (0.1 s) late: the upper bound holds on a loaded machine too.
    assert 1.0 <= job["metrics"]["generation_time_s"] < 3.0


def test_a_duplicate_delivery_yields_one_result(
    api: httpx.Client,
    pair: list[WorkerHandle],
    model_dir: Path,
    redis_client: redis.Redis,
    redis_server_url: str,
) -> None:
    job_id = submit(api, model="tiny", length=LONG, random_seed=3)["id"]
    first = wait_running(redis_client, job_id)["worker"]
    holder = next(worker for worker in pair if worker.worker_id == first)
    other = next(worker for worker in pair if worker is not holder)
    celery = make_celery(Settings(redis_url=redis_server_url))
    # The first attempt cannot finish while its worker is stopped. Once that worker has no
    # BRPOP pending in Redis, the duplicate can only reach the other one, which claims it as
    # attempt 2; only then does the first continue, to find its attempt taken over.
    with holder.paused():
        assert job_record(redis_client, job_id)["status"] == "running"
        wait_for(lambda: not holder.blocked_in_redis(redis_client), 10, "no pending BRPOP")
        celery.send_task(GENERATE_TASK, args=[job_id], queue=generation_queue("tiny"))
        wait_record(redis_client, job_id, attempts="2", worker=other.worker_id)
    job = wait_status(api, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert job["output"] == expected_text(model_dir, "", LONG, 3)
    with api.stream("GET", f"/v1/jobs/{job_id}/stream") as response:
        text = response.read().decode()
    assert text.count("event: done") == 1
    assert text.count('event: status\ndata: {"status":"succeeded"}') == 1


def test_warm_shutdown_hands_a_running_job_to_another_worker(
    api: httpx.Client, pair: list[WorkerHandle], model_dir: Path, redis_client: redis.Redis
) -> None:
    job_id = submit(api, model="tiny", length=LONG, random_seed=11)["id"]
    first = wait_running(redis_client, job_id)["worker"]
    leaving = next(worker for worker in pair if worker.worker_id == first)
    # Stopped, the worker cannot finish the job before the SIGTERM is pending; once it
    # continues, its warm shutdown hands the job back within a step or two of the batch, while
    # the characters left take it a second or more.
    with leaving.paused():
        assert job_record(redis_client, job_id)["status"] == "running"
        leaving.signal(signal.SIGTERM)
    leaving.process.wait(20)
    job = wait_status(api, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert redis_client.hget(job_key(job_id), "worker") != first
    assert job["output"] == expected_text(model_dir, "", LONG, 11)


def redis_seconds(client: redis.Redis) -> float:
    """Return Redis's clock (the one job records are stamped with) in Unix seconds."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


@pytest.fixture
def redis_server_url(redis_client: redis.Redis) -> str:
    """Return the URL of the session's Redis."""
    kwargs = redis_client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"
