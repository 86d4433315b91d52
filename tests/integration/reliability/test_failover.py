"""Redis failing over under load: a real primary, a replica and three sentinels.

Jobs run and clients keep submitting while the primary is killed. The API, the generation
worker and the webhook worker reach Redis only through the sentinels, and the API answers
201 only once the replica holds the job (`LSTMGEN_REDIS_MIN_REPLICAS=1`). What must hold:
every job that got a 201 succeeds, with the text an undisturbed run gives, and its
`completed` webhook arrives; every other answer during the switch is a 503 problem+json.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.integration.conftest import StartApi, StartWebhookWorker, StartWorker
from tests.integration.reliability.conftest import calibrated_length, expected_texts
from tests.redis_sentinel import MASTER, ReplicatedRedis
from tests.webhook_receiver import SECRET_A, Received, Receiver

JOB_S = 2.0  # about how long each job runs alone
HOOK = "/failover"


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedRedis]:
    """Start the primary, the replica and the sentinels of this module."""
    cluster = ReplicatedRedis(tmp_path_factory.mktemp("sentinel")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    """Start the webhook receiver."""
    server = Receiver().start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Answer:
    """One answer the API gave a submission."""

    at: float  # monotonic
    status: int  # 0: no HTTP answer at all
    kind: str  # the problem type's last part, or the error, or ""


@dataclass
class Submitter:
    """A client that keeps submitting jobs, each until it is accepted (the same
    Idempotency-Key on every try, as a careful client retries)."""

    api: httpx.Client
    body: dict[str, Any]
    answers: list[Answer] = field(default_factory=list)
    accepted: list[tuple[int, str, float]] = field(default_factory=list)  # seed, id, at
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Submit job after job until told to stop."""
        seed = 0
        while not self.stop.is_set():
            seed += 1
            self._submit(seed)

    def _submit(self, seed: int) -> None:
        headers = {"Idempotency-Key": f"failover-{seed}"}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                response = self.api.post(
                    "/v1/jobs", json={**self.body, "random_seed": seed}, headers=headers
                )
            except httpx.TransportError as error:
                self.answers.append(Answer(time.monotonic(), 0, type(error).__name__))
                time.sleep(0.2)
                continue
            kind = ""
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                kind = response.json()["type"].rpartition("/")[2]
            self.answers.append(Answer(time.monotonic(), response.status_code, kind))
            if response.status_code in (200, 201):
                self.accepted.append((seed, response.json()["id"], time.monotonic()))
                return
            if response.status_code != 503:
                return
            time.sleep(0.1)


def test_every_accepted_job_survives_the_primary_dying(
    replicated: ReplicatedRedis,
    hooks: Receiver,
    start_api: StartApi,
    start_worker: StartWorker,
    start_webhook_worker: StartWebhookWorker,
    model_dir: Path,
) -> None:
    via_sentinels = {"redis_url": replicated.url, "redis_sentinel_master": MASTER}
    start_webhook_worker(
        **via_sentinels,
        webhook_allow_private=True,
        webhook_secrets=[SECRET_A],
        webhook_retry_schedule="0.5,1,1,2,2,5,5",
    )
    worker = start_worker(**via_sentinels, worker_models="tiny", worker_slots=4)
    server = start_api(
        **via_sentinels,
        redis_min_replicas=1,
        redis_replica_timeout_s=1,
        webhook_allow_private=True,
    )
    api = server.client(timeout=30)
    length = calibrated_length(api, "tiny", JOB_S)
    body = {
        "model": "tiny",
        "length": length,
        "webhook": hooks.url(HOOK),
        "webhook_events_filter": ["completed"],
    }
    submitter = Submitter(server.client(timeout=30), body)
    thread = threading.Thread(target=submitter.run, daemon=True)
    thread.start()
    wait_for(lambda: len(submitter.accepted) >= 8, 60, "jobs accepted before the kill")

    old = replicated.primary()
    killed_at = time.monotonic()
    old.kill()
    new, promoted_at = replicated.wait_failover(old)
    old.start()  # it comes back as a replica of the new primary
    wait_for(lambda: replicated.replicas_of(new) == 1, 60, "the old primary to rejoin")
    rejoined_at = time.monotonic()
    after = len(submitter.accepted)
    wait_for(lambda: len(submitter.accepted) >= after + 5, 60, "jobs accepted after the switch")
    submitter.stop.set()
    thread.join(150)
    assert not thread.is_alive()

    # Every other answer was a 503 problem naming why: no 500, no hang, no dropped connection.
    unexpected = [a for a in submitter.answers if a.status not in (200, 201, 503)]
    assert unexpected == [], unexpected
    refused = [a for a in submitter.answers if a.status == 503]
    assert {a.kind for a in refused} <= {"store-unavailable", "not-replicated"}, refused

    # Every accepted job succeeds with the text of an undisturbed run, and says so by webhook.
    seeds = [seed for seed, _, _ in submitter.accepted]
    expected = dict(zip(seeds, expected_texts(model_dir, "tiny", length, seeds), strict=True))

    def final(job_id: str) -> dict[str, Any] | None:
        response = api.get(f"/v1/jobs/{job_id}")
        if response.status_code != 200:
            return None
        job: dict[str, Any] = response.json()
        return job if job["status"] not in ("queued", "running") else None

    ended: dict[str, dict[str, Any]] = {}

    def all_ended() -> bool:
        for _, job_id, _ in submitter.accepted:
            if job_id not in ended and (job := final(job_id)) is not None:
                ended[job_id] = job
        return len(ended) == len(submitter.accepted)

    deadline = time.monotonic() + 180
    while not all_ended() and time.monotonic() < deadline:
        time.sleep(0.5)
    stuck = {job_id: api.get(f"/v1/jobs/{job_id}").json() for _, job_id, _ in submitter.accepted}
    stuck = {job_id: job for job_id, job in stuck.items() if job_id not in ended}
    assert not stuck, _report(stuck, worker.log())
    for seed, job_id, _ in submitter.accepted:
        job = ended[job_id]
        assert job["status"] == "succeeded", job
        assert job["output"] == expected[seed], job_id
    wanted = {job_id for _, job_id, _ in submitter.accepted}

    def delivered(requests: list[Received]) -> set[str]:
        return {json.loads(request.body)["id"] for request in requests}

    got = hooks.wait_until(lambda got: wanted <= delivered(got), HOOK, timeout=120)
    for request in got:
        request.verify(SECRET_A)

    # Recovered: the first 201 after the outage began (a request in flight may end just after
    # the kill, before any 503).
    outage = min(a.at for a in refused if a.at > killed_at)
    recovered = min(at for _, _, at in submitter.accepted if at > outage)
    print(
        f"\nfailover: replica promoted {promoted_at - killed_at:.1f} s after the kill, old primary "
        f"back as its replica at {rejoined_at - killed_at:.1f} s, first 201 again at "
        f"{recovered - killed_at:.1f} s; {len(refused)} answers 503 between; "
        f"{len(submitter.accepted)} jobs accepted, 0 lost, every completed webhook delivered"
    )


def _report(stuck: dict[str, dict[str, Any]], log: str) -> str:
    """Say which jobs never ended, in what state, and what the worker logged about them."""
    lines = [f"{len(stuck)} accepted job(s) never ended:"]
    for job_id, job in stuck.items():
        state = {key: job.get(key) for key in ("status", "attempts", "created_at", "started_at")}
        lines.append(f"{job_id}: {state}")
        lines += [f"  {line}" for line in log.splitlines() if job_id in line][-20:]
    lines.append("worker log, last lines:")
    lines += log.splitlines()[-60:]
    return "\n".join(lines)
