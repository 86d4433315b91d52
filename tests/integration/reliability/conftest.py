"""What the fault tests share: what Redis holds about a job, its broker messages, and the engine's
own output to compare with.

Timings here are chosen so that a redelivery after a worker's death is quick (a visibility
timeout of seconds) while a healthy job still ends well inside it.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import httpx
import redis

from shared.celery_app import generation_queue
from shared.engine.batch import Batch
from shared.engine.registry import ModelRegistry
from shared.engine.sampling import SamplingParams
from shared.jobs.keys import events_key, job_key

VISIBILITY_S = 10  # broker redelivers an unacknowledged job after this
TIME_LIMIT_S = 8.0  # a job running longer ends timed_out (must stay below VISIBILITY_S)
FAST: dict[str, Any] = {  # worker settings: quick redelivery
    "visibility_timeout_s": VISIBILITY_S,
    "job_time_limit_s": TIME_LIMIT_S,
    "worker_slots": 4,
}
WAIT = {"Prefer": "wait=60"}
UNACKED = "unacked"  # kombu's hash of delivered, unacknowledged messages


PROBE_LENGTH = 20_000  # characters of the job that measures the speed: tenths of a second


def calibrated_length(api: httpx.Client, model: str, seconds: float, longest: int = 100_000) -> int:
    """Return how many characters (at most `longest`) a lone job of `model` generates in about
    `seconds` now."""
    # A fixed length would end before the test can catch it running on a fast machine, or
    # run past the time limit on a loaded one: probe jobs measure the speed instead. An
    # understated speed makes every job sized from it end sooner than meant, and both a short
    # probe (mostly claim and flush overhead) and the first job of a fresh worker (slower than
    # the next ones) understate it: the faster of two long probes counts. Still an estimate: a
    # test that must catch such a job running also stops its worker (`paused`) at once and
    # checks that it did.
    body = {"model": model, "length": PROBE_LENGTH}
    speeds = []
    for _ in range(2):
        probe = api.post("/v1/jobs", json=body, headers=WAIT).json()
        assert probe["status"] == "succeeded", probe
        speeds.append(probe["metrics"]["chars_per_s"])
    return max(1_000, min(longest, int(max(speeds) * seconds)))


def record(client: redis.Redis, job_id: str) -> dict[str, str]:
    """Return a job's raw record hash."""
    found: dict[str, str] = client.hgetall(job_key(job_id))  # type: ignore[assignment]
    return found


def job_events(client: redis.Redis, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Return a job's event stream as (event, data) pairs, oldest first."""
    entries: Any = client.xrange(events_key(job_id))
    return [(fields["event"], json.loads(fields["data"])) for _, fields in entries]


def final_events(client: redis.Redis, job_id: str) -> list[str]:
    """Return the final statuses a job's event stream recorded (one per final result)."""
    finals = {"succeeded", "failed", "canceled", "timed_out", "expired"}
    return [
        data["status"]
        for event, data in job_events(client, job_id)
        if event == "status" and data.get("status") in finals
    ]


def broker_messages(client: redis.Redis, job_id: str, model: str) -> int:
    """Return how many broker messages of a job wait in its queue or are unacknowledged."""
    queued: list[str] = client.lrange(generation_queue(model), 0, -1)  # type: ignore[assignment]
    unacked: dict[str, str] = client.hgetall(UNACKED)  # type: ignore[assignment]
    return sum(job_id in message for message in [*queued, *unacked.values()])


def expected_texts(model_dir: Path, model: str, length: int, random_seeds: list[int]) -> list[str]:
    """Return what the engine generates for one-sample jobs from the default seed, batched."""
    loaded = ModelRegistry(model_dir).get(model)
    params = SamplingParams(length=length, temperature=loaded.defaults.temperature)
    batch = Batch(loaded, capacity=len(random_seeds))
    seed_ids = loaded.encode(loaded.defaults.seed)
    for index, random_seed in enumerate(random_seeds):
        batch.add(index, seed_ids, params, random_seed)
    texts: dict[Hashable, str] = {}
    while len(batch):
        texts.update((done.key, done.text) for done in batch.step())
    return [texts[index] for index in range(len(random_seeds))]
