"""Redis stopped and restarted (append-only file on) under a running API and worker.

The API must answer 503 problem+json while Redis is down, and every job it accepted before the
stop must finish after the restart, with neither the API nor the worker restarted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from scripts.redis_server import RedisServer
from tests.conftest import wait_for
from tests.integration.conftest import StartApi, StartWorker
from tests.integration.reliability.conftest import (
    broker_messages,
    calibrated_length,
    expected_texts,
    final_events,
    record,
)
from tests.integration.service.helpers import check_problem, submit, wait_status

JOBS = 6  # with 2 worker slots: two running and four queued at the stop
JOB_S = 3.0  # about how long each job runs


@pytest.fixture(scope="module")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Start a redis-server of this module's own, with append-only persistence."""
    server = RedisServer(tmp_path_factory.mktemp("redis-aof"), appendonly=True).start()
    yield server
    server.stop()


def statuses(client: redis.Redis, ids: list[str]) -> list[tuple[str, int]]:
    """Return (status, characters done) of each job, from Redis."""
    found = [record(client, job_id) for job_id in ids]
    return [(job.get("status", "missing"), int(job.get("done", "0"))) for job in found]


def check_unavailable(response: httpx.Response) -> None:
    """Assert a 503 problem that says the store is unreachable, with Retry-After."""
    body = check_problem(response, 503)
    assert body["type"].endswith("/store-unavailable"), body
    assert int(response.headers["Retry-After"]) >= 1


def test_jobs_accepted_before_a_redis_restart_all_finish(
    aof_redis: RedisServer, start_api: StartApi, start_worker: StartWorker, model_dir: Path
) -> None:
    worker = start_worker(redis_url=aof_redis.url, worker_models="tiny", worker_slots=2)
    server = start_api(redis_url=aof_redis.url)
    api = server.client(timeout=60)
    client = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    length = calibrated_length(api, "tiny", JOB_S)
    ids = [submit(api, model="tiny", length=length, random_seed=100 + i)["id"] for i in range(JOBS)]

    def two_running() -> bool:
        found = statuses(client, ids)
        return sum(status == "running" and done > 0 for status, done in found) == 2

    wait_for(two_running, 60, "two jobs to make output")
    before = statuses(client, ids)
    assert [status for status, _ in before].count("queued") >= 2, before
    client.close()
    aof_redis.stop()  # SIGTERM: Redis writes its append-only file and exits

    check_unavailable(api.get(f"/v1/jobs/{ids[0]}"))
    check_unavailable(api.post("/v1/jobs", json={"model": "tiny", "length": 10}))
    check_unavailable(api.get("/v1/jobs"))
    check_unavailable(api.post(f"/v1/jobs/{ids[-1]}/cancel"))
    check_problem(api.get("/readyz"), 503)
    assert api.get("/healthz").status_code == 200
    # Stay down until the worker has felt it: its consumer lost the broker, and its batch loop
    # kept generating but could neither flush progress nor record the jobs that ended.
    for line in ("Connection to broker lost", "flush failed", "finished jobs, will retry"):
        wait_for(lambda: line in worker.log(), 60, f"the worker to log {line!r}")  # noqa: B023

    aof_redis.start()  # same port, same data directory
    jobs = [wait_status(api, job_id, timeout=120) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * JOBS, jobs
    expected = expected_texts(model_dir, "tiny", length, [100 + i for i in range(JOBS)])
    assert [job["output"] for job in jobs] == expected
    client = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    assert all(final_events(client, job_id) == ["succeeded"] for job_id in ids)
    wait_for(
        lambda: not any(broker_messages(client, job_id, "tiny") for job_id in ids),
        30,
        "every message acknowledged",
    )
    client.close()
    assert worker.alive() and server.alive()  # neither was restarted
    after = submit(api, model="tiny", length=50)
    assert wait_status(api, after["id"], timeout=60)["status"] == "succeeded"
    assert api.get("/readyz").status_code == 200
