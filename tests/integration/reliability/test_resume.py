"""Exact resume: a job whose worker is killed goes on, on another worker, from its stored text.

Two real workers serve reference models; the one running a long job is frozen, then killed.
Its heartbeat lapses, the other worker requeues the job within seconds (no visibility timeout
waited for) and resumes it after the text Redis holds: the final text is byte for byte what an
uninterrupted run with the same `random_seed` gives, and only what the dead worker had not yet
flushed is generated twice. `continue_from` goes on from a finished job the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.engine.batch import generate
from shared.engine.registry import ModelRegistry
from shared.engine.sampling import SamplingParams
from shared.jobs.keys import output_key
from tests.conftest import wait_for
from tests.integration.conftest import ApiHandle, StartApi, StartWorker, WorkerHandle, wait_record
from tests.integration.reliability.conftest import job_events, record
from tests.integration.service.helpers import submit, wait_status

MODELS = "ml5_darwin,jessvb_nietzsche"  # a stateful model and a window model
RESUME_LIMIT_S = 15.0  # from the kill until another worker runs the job again
FLUSH_S = 0.1  # the workers' progress_interval_s: what a kill may lose at most


@dataclass(frozen=True)
class Case:
    """A job to interrupt: its model, samples and sampling."""

    model: str
    n: int
    length: int
    sampling: dict[str, Any]


CASES = {
    "stateful": Case("ml5_darwin", 1, 300_000, {"temperature": 0.8, "top_p": 0.95}),
    "window": Case("jessvb_nietzsche", 1, 20_000, {"temperature": 0.7, "top_k": 12}),
    "stateful-n4": Case("ml5_darwin", 4, 120_000, {"temperature": 1.0, "stop": ["\n\n\n\n"]}),
}
# Each case takes its worker seconds: from a tenth done to the end leaves the test ample time to
# see the job running and stop its worker.
LONGEST = max(case.length for case in CASES.values())


@pytest.fixture(scope="module")
def models(shared_dir: Path) -> Path:
    """Return the folder of the reference models."""
    return shared_dir / "models"


@pytest.fixture(scope="module")
def stack(start_api: StartApi, models: Path) -> ApiHandle:
    """Start the API over the reference models, accepting every case's length."""
    return start_api(model_dir=models, max_length=LONGEST)


def start_pair(start_worker: StartWorker, models: Path) -> list[WorkerHandle]:
    """Start two workers of the reference models, side by side."""
    workers = [start_worker(wait=False, model_dir=models, worker_models=MODELS) for _ in range(2)]
    return [worker.wait_ready() for worker in workers]


def uninterrupted(models: Path, case: Case, random_seed: int) -> list[str]:
    """Return what the engine alone generates for the case's job."""
    model = ModelRegistry(models).get(case.model)
    sampling = {**case.sampling, "stop": tuple(case.sampling.get("stop", ()))}
    params = SamplingParams(length=case.length, **sampling)
    return generate(model, "", params, random_seed=random_seed, n=case.n).texts


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def resumed_at(worker: WorkerHandle, job_id: str) -> list[int]:
    """Return where the worker's log says it resumed the job's samples."""
    pattern = re.compile(rf"\[{job_id}\].*job resumed at \[([\d, ]+)\] characters")
    for line in worker.log().splitlines():
        found = pattern.search(line)
        if found:
            return [int(x) for x in found.group(1).split(",")]
    return []


def first_attempt_speed(client: redis.Redis, job_id: str, killed_at: float) -> tuple[float, float]:
    """Return the killed attempt's speed (characters per second, from its `output` events'
    times and progress) and the seconds from its last flush to the kill."""
    entries: Any = client.xrange(f"lstmgen:job:{job_id}:events")
    outputs = [
        (int(entry_id.split("-")[0]) / 1000, fields["data"])
        for entry_id, fields in entries
        if fields["event"] == "output"
    ]
    points = [(t, json.loads(data)["done"]) for t, data in outputs]
    (t0, d0), (t1, d1) = points[0], points[-1]
    speed = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
    return speed, max(0.0, killed_at - t1)


@pytest.mark.parametrize("name", list(CASES))
def test_a_killed_workers_job_resumes_on_another_worker_with_the_uninterrupted_text(
    api: httpx.Client,
    start_worker: StartWorker,
    redis_client: redis.Redis,
    models: Path,
    name: str,
) -> None:
    case = CASES[name]
    workers = start_pair(start_worker, models)
    body = {"model": case.model, "length": case.length, "n": case.n, "random_seed": 77}
    job_id = submit(api, **body, **case.sampling)["id"]
    total = case.length * case.n
    running = wait_for(
        lambda: (
            (r := record(redis_client, job_id)).get("status") == "running"
            and int(r.get("done", "0")) >= total // 10
            and r
        ),
        120,
        "the job to be a tenth done",
    )
    victim = next(worker for worker in workers if worker.worker_id == running["worker"])
    survivor = next(worker for worker in workers if worker is not victim)
    with victim.paused():  # frozen: what Redis holds now is all the dead worker leaves
        found = record(redis_client, job_id)
        assert (found["status"], found["attempts"]) == ("running", "1"), found
        stored = [len(redis_client.get(output_key(job_id, i)) or "") for i in range(case.n)]
        killed_at = redis_now(redis_client)
        victim.kill()

    again = wait_record(redis_client, job_id, timeout=60, attempts="2")
    resumed_after_s = float(again["started_at"]) - killed_at
    job = wait_status(api, job_id, timeout=300)
    assert job["status"] == "succeeded", job
    outputs = job["output"] if case.n > 1 else [job["output"]]
    expected = uninterrupted(models, case, 77)
    assert outputs == expected  # byte for byte
    assert record(redis_client, job_id)["worker"] == survivor.worker_id
    assert resumed_at(survivor, job_id) == stored  # nothing stored was generated again
    speed, unflushed_s = first_attempt_speed(redis_client, job_id, killed_at)
    print(
        f"\n{name}: resumed {resumed_after_s:.1f} s after the kill, at {stored} of "
        f"{[len(t) for t in expected]} characters; generated twice: what the killed worker made "
        f"in the {unflushed_s:.3f} s after its last flush, about {speed * unflushed_s:.0f} "
        f"characters (at most one flush: {FLUSH_S} s x {speed:.0f} c/s = {speed * FLUSH_S:.0f})"
    )
    assert resumed_after_s <= RESUME_LIMIT_S
    events = job_events(redis_client, job_id)
    requeued = [data for event, data in events if data.get("status") == "queued"]
    assert requeued[-1] == {"status": "queued", "reason": "worker_lost"}
    survivor.stop()


def test_a_continuation_gives_the_text_one_longer_job_gives(
    api: httpx.Client, start_worker: StartWorker, models: Path
) -> None:
    start_worker(model_dir=models, worker_models=MODELS)
    sampling = {"model": "ml5_darwin", "n": 2, "temperature": 0.9, "top_k": 20}
    wait = {"Prefer": "wait=120"}
    first = api.post("/v1/jobs", json={**sampling, "length": 3000}, headers=wait).json()
    assert first["status"] == "succeeded", first
    body = {"continue_from": first["id"], "length": 2000, "temperature": 0.9, "top_k": 20}
    second = api.post("/v1/jobs", json=body, headers=wait).json()
    assert second["status"] == "succeeded", second
    assert second["random_seed"] == first["random_seed"]
    whole = {**sampling, "length": 5000, "random_seed": first["random_seed"]}
    one = api.post("/v1/jobs", json=whole, headers=wait).json()
    assert [a + b for a, b in zip(first["output"], second["output"], strict=True)] == one["output"]
