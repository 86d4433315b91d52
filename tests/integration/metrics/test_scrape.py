"""`GET /metrics` on the real stack counts what the API and the workers did."""

from __future__ import annotations

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from shared.client import Client
from tests.conftest import wait_for
from tests.integration.conftest import (
    ApiHandle,
    StartApi,
    StartWorker,
    WorkerHandle,
    job_record,
    wait_record,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
ENDLESS = 10_000_000  # characters: the tiny model needs many seconds for them


@pytest.fixture(scope="module")
def workers(start_worker: StartWorker) -> list[WorkerHandle]:
    """Start two workers serving `tiny`: metrics must add up across them."""
    return [start_worker(worker_models="tiny") for _ in range(2)]


@pytest.fixture(scope="module")
def stack(workers: list[WorkerHandle], start_api: StartApi) -> ApiHandle:
    """Start the API in front of the workers, accepting ENDLESS jobs."""
    return start_api(max_length=ENDLESS)


def scrape(url: str) -> Samples:
    """Return every sample of `GET /metrics`, keyed by (name, sorted labels)."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_scrape_counts_jobs_characters_speeds_queues_and_workers(
    stack: ApiHandle, workers: list[WorkerHandle], redis_client: redis.Redis
) -> None:
    with Client(stack.url) as client:
        finished = [client.submit("tiny", seed="a", length=50 + i) for i in range(4)]
        for job in finished:
            assert client.wait(job.id, timeout=60, poll_interval=0.05).status == "succeeded"
        running = client.submit("tiny", seed="a", length=ENDLESS)
        wait_for(lambda: client.get(running.id).text, 30, "the long job to start")
        # ENDLESS characters take the tiny model many seconds, and the cancel is recorded while
        # the job's worker is stopped: the job cannot have finished first.
        holder = job_record(redis_client, running.id)["worker"]
        with next(worker for worker in workers if worker.worker_id == holder).paused():
            client.cancel(running.id)
            wait_record(redis_client, running.id, status="running", cancel_requested="1")
        canceled = client.wait(running.id, timeout=10, poll_interval=0.05)
        queue = ("lstmgen_queue_depth", (("queue", "lstmgen.gen.tiny3"),))
        before = scrape(stack.url).get(queue, 0)  # other modules may leave messages there
        waiting = [client.submit("tiny3", seed="a", length=5) for _ in range(2)]  # no worker
        found = scrape(stack.url)
        client.cancel(waiting[0].id)
        after_cancel = scrape(stack.url)
    partial = canceled.progress.done if canceled.progress else 0

    assert found[("lstmgen_redis_up", ())] == 1
    assert found[("lstmgen_workers_up", ())] >= 2  # a killed worker's heartbeat lingers
    assert found[("lstmgen_jobs_total", (("status", "queued"),))] == 7
    assert found[("lstmgen_jobs_total", (("status", "succeeded"),))] == 4
    assert found[("lstmgen_jobs_total", (("status", "canceled"),))] == 1
    assert after_cancel[("lstmgen_jobs_total", (("status", "canceled"),))] == 2
    chars = found[("lstmgen_characters_generated_total", (("model", "tiny"),))]
    assert chars == 50 + 51 + 52 + 53 + partial
    assert found[queue] == before + 2
    assert found[("lstmgen_queue_depth", (("queue", "lstmgen.gen.tiny"),))] == 0

    speed = (("model", "tiny"),)
    assert found[("lstmgen_job_chars_per_second_count", speed)] == 5
    assert found[("lstmgen_job_chars_per_second_bucket", (("le", "+Inf"), *speed))] == 5
    done = (("model", "tiny"), ("status", "succeeded"))
    assert found[("lstmgen_job_time_to_finish_seconds_count", done)] == 4
    total = found[("lstmgen_job_time_to_finish_seconds_sum", done)]
    assert 0 < total < 4 * 60
    stopped = (("model", "tiny"), ("status", "canceled"))
    assert found[("lstmgen_job_time_to_finish_seconds_count", stopped)] == 1


def test_metrics_need_no_api_key(start_api: StartApi, redis_client: redis.Redis) -> None:
    keyed = start_api(api_keys="metrics-test-key")
    assert httpx.get(f"{keyed.url}/v1/jobs").status_code == 401
    assert scrape(keyed.url)[("lstmgen_redis_up", ())] == 1


def test_worker_log_lines_about_a_job_carry_its_id(
    stack: ApiHandle, workers: list[WorkerHandle], redis_client: redis.Redis
) -> None:
    with Client(stack.url) as client:
        job = client.wait(client.submit("tiny", seed="a", length=20).id, timeout=60)

    def lines_about_job() -> list[str] | None:
        log = "".join(worker.log() for worker in workers)
        lines = [line for line in log.splitlines() if f"[{job.id}]" in line]
        # Celery's own line about the task comes once the task has returned, which may be
        # after the client saw the job end: wait for it rather than for the first line.
        ended = any("job ended succeeded" in line for line in lines)
        return lines if ended and any("succeeded in" in line for line in lines) else None

    wait_for(lines_about_job, 10, "the worker's log lines about the job")
