"""Continuous batching through the real stack: jobs join and leave one running batch, exactly.

Every job's output is compared byte for byte with `shared.engine.generate` run alone with the
same random seed, for a stateful model (ml5_darwin) and a window model (jessvb_nietzsche).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.engine.batch import generate
from shared.engine.registry import ModelRegistry
from shared.engine.sampling import SamplingParams
from shared.jobs.keys import job_key
from tests.conftest import wait_for
from tests.integration.conftest import ApiHandle, StartApi, StartWorker, WorkerHandle
from tests.integration.service.helpers import get_job, submit, wait_progress, wait_status

pytestmark = pytest.mark.shared_models

MODELS = ("ml5_darwin", "jessvb_nietzsche")  # stateful, window
# The same weights under other names, served only by a worker with a short time limit.
LIMITED = {"ml5_darwin": "darwin_limited", "jessvb_nietzsche": "nietzsche_limited"}
SLOTS = 16  # jobs the main worker takes at once: its batch capacity
TIME_LIMIT_S = 2.0
ENDLESS = 10**7  # a length no job here reaches: it ends by cancel or time limit
SLOW = {"ml5_darwin": 1, "jessvb_nietzsche": 5}  # a window model does W steps per character


@dataclass(frozen=True)
class Spec:
    """One job: what is sent to the API and run alone for the expected output."""

    length: int
    random_seed: int
    temperature: float = 0.5
    top_k: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: str = "The "
    n: int = 1
    params: SamplingParams = field(init=False)

    def __post_init__(self) -> None:
        params = SamplingParams(self.length, self.temperature, self.top_k, self.top_p, self.stop)
        object.__setattr__(self, "params", params)

    def body(self, model: str) -> dict[str, Any]:
        """Return the job request."""
        return {
            "model": model, "seed": self.seed, "length": self.length,
            "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p,
            "stop": list(self.stop), "random_seed": self.random_seed, "n": self.n,
        }  # fmt: skip


@pytest.fixture(scope="module")
def batch_model_dir(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a model directory of links to the reference models (read in place)."""
    folder = tmp_path_factory.mktemp("batch-models")
    for name in MODELS:
        (folder / name).symlink_to(shared_dir / "models" / name, target_is_directory=True)
        (folder / LIMITED[name]).symlink_to(shared_dir / "models" / name, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def registry(batch_model_dir: Path) -> ModelRegistry:
    """Return the models the expected outputs are generated with."""
    return ModelRegistry(batch_model_dir)


@pytest.fixture(scope="module")
def worker(start_worker: StartWorker, batch_model_dir: Path) -> WorkerHandle:
    """Start one worker process serving both reference models."""
    return start_worker(
        model_dir=batch_model_dir, worker_models=MODELS, worker_slots=SLOTS,
        worker_heartbeat_s=0.2,
    )  # fmt: skip


@pytest.fixture(scope="module")
def limited_worker(start_worker: StartWorker, batch_model_dir: Path) -> WorkerHandle:
    """Start a worker whose jobs time out after TIME_LIMIT_S."""
    return start_worker(
        model_dir=batch_model_dir, worker_models=list(LIMITED.values()), worker_slots=8,
        job_time_limit_s=TIME_LIMIT_S,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(start_api: StartApi, batch_model_dir: Path) -> ApiHandle:
    """Start the API over the reference models, accepting endless jobs."""
    return start_api(model_dir=batch_model_dir, max_length=ENDLESS)


def start(api: httpx.Client, model: str, spec: Spec) -> str:
    """Submit a job and return its id."""
    return str(submit(api, **spec.body(model))["id"])


def check_exact(job: dict[str, Any], model: str, spec: Spec, registry: ModelRegistry) -> None:
    """Assert a finished job's output is byte for byte what the engine gives alone."""
    assert job["status"] == "succeeded", job
    solo = generate(registry.get(model), spec.seed, spec.params, random_seed=spec.random_seed,
                    n=spec.n)  # fmt: skip
    output = job["output"] if spec.n > 1 else [job["output"]]
    reasons = job["finish_reason"] if spec.n > 1 else [job["finish_reason"]]
    assert [text.encode() for text in output] == [text.encode() for text in solo.texts]
    assert reasons == [reason.value for reason in solo.finish_reasons]


def check_prefix(job: dict[str, Any], model: str, spec: Spec, registry: ModelRegistry) -> None:
    """Assert a stopped job's partial output is exactly the start of its solo run."""
    done = job["progress"]["done"]
    assert 0 < done < spec.length and len(job["output"]) == done, job
    params = SamplingParams(done, spec.temperature, spec.top_k, spec.top_p)
    solo = generate(registry.get(model), spec.seed, params, random_seed=spec.random_seed)
    assert job["output"].encode() == solo.text.encode()


@dataclass(frozen=True)
class Span:
    """When a job ran, and where."""

    started: float
    completed: float
    worker: str


def span(client: redis.Redis, job_id: str) -> Span:
    """Return a finished job's running interval from its record."""
    record = client.hgetall(job_key(job_id))
    return Span(float(record["started_at"]), float(record["completed_at"]), str(record["worker"]))


def batch_peak(client: redis.Redis, worker: WorkerHandle, model: str) -> int:
    """Return the largest batch of a model the worker's heartbeat reports."""
    beat = client.get(worker.heartbeat_key)
    batches = json.loads(beat)["batches"] if beat else {}
    return int(batches.get(model, {}).get("peak", 0))


@pytest.mark.parametrize("model", MODELS)
def test_jobs_joining_and_leaving_a_running_batch_match_solo_runs(
    api: httpx.Client,
    worker: WorkerHandle,
    registry: ModelRegistry,
    redis_client: redis.Redis,
    model: str,
) -> None:
    slow = SLOW[model]
    anchor = Spec(ENDLESS, random_seed=1, temperature=0.7)
    first_wave = {
        "short": Spec(300 // slow, random_seed=2, temperature=1.0, top_k=5),
        "greedy": Spec(500 // slow, random_seed=3, temperature=0.0, seed="the origin of "),
    }
    second_wave = {
        "stops": Spec(600 // slow, random_seed=4, temperature=0.9, top_p=0.9, stop=("e ", ".")),
        "samples": Spec(400 // slow, random_seed=5, temperature=0.6, top_k=10, top_p=0.8, n=2),
    }
    third_wave = {"hot": Spec(350 // slow, random_seed=6, temperature=1.3, seed="of")}
    specs = {"anchor": anchor, **first_wave, **second_wave, **third_wave}
    ids = {"anchor": start(api, model, anchor)}
    wait_progress(api, ids["anchor"], 10)
    ids |= {name: start(api, model, spec) for name, spec in first_wave.items()}
    wait_progress(api, ids["short"], 1)
    ids |= {name: start(api, model, spec) for name, spec in second_wave.items()}
    wait_status(api, ids["short"])
    ids |= {name: start(api, model, spec) for name, spec in third_wave.items()}
    jobs = {name: wait_status(api, job_id) for name, job_id in ids.items() if name != "anchor"}
    assert api.post(f"/v1/jobs/{ids['anchor']}/cancel").status_code == 200
    jobs["anchor"] = wait_status(api, ids["anchor"], timeout=10)

    assert jobs["anchor"]["status"] == "canceled"
    check_prefix(jobs["anchor"], model, anchor, registry)
    for name, job in jobs.items():
        if name != "anchor":
            check_exact(job, model, specs[name], registry)
    spans = {name: span(redis_client, job_id) for name, job_id in ids.items()}
    assert {s.worker for s in spans.values()} == {worker.worker_id}
    outer = spans.pop("anchor")
    # Every job joined while the anchor was running and left before it ...
    assert all(outer.started < s.started and s.completed < outer.completed for s in spans.values())
    # ... and one joined after another had already left.
    assert spans["hot"].started > spans["short"].completed
    assert jobs["stops"]["finish_reason"] == "stop"


@pytest.mark.parametrize("model", MODELS)
def test_a_full_batch_runs_every_job_together(
    api: httpx.Client,
    worker: WorkerHandle,
    registry: ModelRegistry,
    redis_client: redis.Redis,
    model: str,
) -> None:
    specs = [
        Spec(ENDLESS, random_seed=100 + i, temperature=0.2 + 0.1 * i,
             top_k=None if i % 3 else 3 + i)
        for i in range(SLOTS)
    ]  # fmt: skip
    with ThreadPoolExecutor(SLOTS) as pool:  # submitted together, as concurrent clients do
        ids = list(pool.map(lambda spec: start(api, model, spec), specs))
        for job_id in ids:
            wait_progress(api, job_id, 1)
        # The worker steps every one of them in one batch.
        wait_for(lambda: batch_peak(redis_client, worker, model) == SLOTS, 10, "a full batch")
        list(pool.map(lambda job_id: api.post(f"/v1/jobs/{job_id}/cancel"), ids))
    jobs = [wait_status(api, job_id) for job_id in ids]
    for job, spec in zip(jobs, specs, strict=True):
        assert job["status"] == "canceled"
        check_prefix(job, model, spec, registry)
    spans = [span(redis_client, job_id) for job_id in ids]
    assert {s.worker for s in spans} == {worker.worker_id}
    assert max(s.started for s in spans) < min(s.completed for s in spans)  # all ran at once


@pytest.mark.parametrize("model", MODELS)
def test_a_job_canceled_mid_batch_leaves_the_others_exact(
    api: httpx.Client,
    worker: WorkerHandle,
    registry: ModelRegistry,
    redis_client: redis.Redis,
    model: str,
) -> None:
    doomed = Spec(ENDLESS, random_seed=21, temperature=0.8, top_p=0.95)
    others = [Spec(ENDLESS, random_seed=22 + i, temperature=0.4 * i, top_k=8) for i in range(3)]
    doomed_id = start(api, model, doomed)  # the first row: leaving moves another row into it
    wait_progress(api, doomed_id, 10)
    other_ids = [start(api, model, spec) for spec in others]
    for job_id in other_ids:
        wait_progress(api, job_id, 1)
    # From the request to the end Redis recorded (its clock is this machine's `time.time()`):
    # how late this test's polling notices on a loaded machine is no part of the promise.
    canceled_at = time.time()
    assert api.post(f"/v1/jobs/{doomed_id}/cancel").status_code == 200
    canceled = wait_status(api, doomed_id, timeout=5)
    assert span(redis_client, doomed_id).completed - canceled_at < 1.5
    assert canceled["status"] == "canceled"
    check_prefix(canceled, model, doomed, registry)
    # The others go on after it left, then stop too; everything they wrote is exact.
    reached = [get_job(api, job_id)["progress"]["done"] for job_id in other_ids]
    for job_id, done in zip(other_ids, reached, strict=True):
        wait_progress(api, job_id, done + 20)
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    gone = span(redis_client, doomed_id).completed
    for job_id, spec in zip(other_ids, others, strict=True):
        check_prefix(wait_status(api, job_id), model, spec, registry)
        assert span(redis_client, job_id).completed > gone


@pytest.mark.parametrize("model", MODELS)
def test_jobs_timing_out_mid_batch_leave_the_others_exact(
    api: httpx.Client,
    limited_worker: WorkerHandle,
    registry: ModelRegistry,
    redis_client: redis.Redis,
    model: str,
) -> None:
    name = LIMITED[model]
    first = Spec(ENDLESS, random_seed=31, temperature=0.6)
    quick = [Spec(80 // SLOW[model], random_seed=32 + i, temperature=1.0, top_k=4) for i in (0, 1)]
    second = Spec(ENDLESS, random_seed=35, temperature=0.3, top_p=0.7)
    first_id = start(api, name, first)
    wait_progress(api, first_id, 5)
    quick_ids = [start(api, name, spec) for spec in quick]
    quick_jobs = [wait_status(api, job_id) for job_id in quick_ids]
    second_id = start(api, name, second)  # joins after the quick ones left, outlives the first
    ended = [wait_status(api, job_id, timeout=30) for job_id in (first_id, second_id)]

    for job, spec in zip(quick_jobs, quick, strict=True):
        check_exact(job, name, spec, registry)
    for job, spec in zip(ended, (first, second), strict=True):
        assert job["status"] == "timed_out" and job["error"]["type"] == "time_limit"
        check_prefix(job, name, spec, registry)
    spans = [span(redis_client, job_id) for job_id in (first_id, *quick_ids, second_id)]
    assert {s.worker for s in spans} == {limited_worker.worker_id}
    assert all(spans[0].started < s.started < spans[0].completed for s in spans[1:])
    assert spans[0].completed < spans[-1].completed
    assert get_job(api, second_id)["progress"]["done"] > 0
