"""Fair share under load, with the real API and a real worker: one key's flood of 2,000 jobs does
not hold back another key's jobs, and only the flooding key gets 429."""

from __future__ import annotations

import httpx
import pytest
import redis

from tests.integration.conftest import ApiHandle, StartApi, StartWorker
from tests.integration.reliability.conftest import calibrated_length
from tests.integration.service.helpers import wait_status

KEYS = {"a": "key-a-flood", "b": "key-b-few"}
SLOTS = 8
START_LIMIT_S = 5.0  # from a job's submission until it runs, for the key with few jobs


@pytest.fixture(scope="module")
def stack(start_api: StartApi, start_worker: StartWorker) -> ApiHandle:
    """Two named keys; a queued limit of 500 jobs per key; one worker with a few slots."""
    start_worker(worker_models="tiny", worker_slots=SLOTS)
    return start_api(
        api_keys=",".join(f"{name}:{key}" for name, key in KEYS.items()),
        key_max_queued=500,
        key_submit_rate=10_000,
        key_submit_burst=10_000,
    )


def test_a_flood_from_one_key_does_not_hold_back_another_keys_jobs(
    stack: ApiHandle, redis_client: redis.Redis
) -> None:
    flood, few = stack.client(KEYS["a"]), stack.client(KEYS["b"])
    # Jobs a slot finishes in a fraction of a second, so the flood keeps every slot busy.
    length = calibrated_length(flood, "tiny", 0.2)
    answers: list[httpx.Response] = [
        flood.post("/v1/jobs", json={"model": "tiny", "length": length}) for _ in range(2000)
    ]
    codes = [answer.status_code for answer in answers]
    assert set(codes) == {201, 429}, set(codes)
    refused = [answer.json() for answer in answers if answer.status_code == 429]
    assert {problem["limit"] for problem in refused} == {"max_queued"}
    assert flood.get("/v1/usage").json()["queued"] > 100  # the flood still waits

    mine = [few.post("/v1/jobs", json={"model": "tiny", "length": length}) for _ in range(10)]
    assert [answer.status_code for answer in mine] == [201] * 10
    jobs = [wait_status(few, answer.json()["id"], timeout=60) for answer in mine]
    assert {job["status"] for job in jobs} == {"succeeded"}
    waits = [job["metrics"]["queue_time_s"] for job in jobs]
    still_queued = flood.get("/v1/usage").json()["queued"]
    print(f"\nkey b's queue times behind {still_queued} of key a's jobs: {waits}")
    assert max(waits) <= START_LIMIT_S, waits
    assert still_queued > 0  # b's jobs went ahead of a's queue, not after it

    metrics = httpx.get(f"{stack.url}/metrics").text
    assert 'lstmgen_key_rejections_total{key="a",limit="max_queued"}' in metrics
    assert 'key="b",limit=' not in metrics
