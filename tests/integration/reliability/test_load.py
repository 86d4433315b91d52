"""A short run of bench/load.py against the real stack: overload gives 429s, never a 5xx or a
lost job."""

from __future__ import annotations

import httpx
import pytest
import redis

from bench.load import LoadConfig, run_load
from tests.integration.conftest import ApiHandle, StartApi, StartWorker

SLOTS = 2
QUEUE_DEPTH = 4
CLIENTS = 12  # more than slots + queue depth: overload


@pytest.fixture(scope="module")
def stack(start_api: StartApi, start_worker: StartWorker) -> ApiHandle:
    """Start one two-slot worker and an API that queues at most four jobs."""
    start_worker(worker_models="tiny", worker_slots=SLOTS)
    return start_api(max_queue_depth=QUEUE_DEPTH, api_threads=CLIENTS + 8)


def test_overload_gets_429s_and_loses_nothing(stack: ApiHandle, redis_client: redis.Redis) -> None:
    config = LoadConfig(
        url=stack.url, duration_s=6.0, clients=CLIENTS, model="tiny", length=300, drain_s=60.0
    )
    report = run_load(config)
    print("\n".join(report.lines()))
    assert report.errors_5xx == 0 and report.transport_errors == 0, report.samples
    assert report.lost == []
    assert report.other_4xx == 0, report.samples
    assert report.rejected_429 > 0  # the queue limit held
    assert report.accepted > 0 and report.statuses == {"succeeded": report.accepted}
    assert report.jobs_per_s > 0 and report.latency_s["p99"] >= report.latency_s["p50"] > 0
    with httpx.Client(base_url=stack.url) as http:
        assert http.get("/readyz").status_code == 200
