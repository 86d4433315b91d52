"""Load the API with concurrent clients for a fixed time; report throughput, latency, 429s, losses.

Each client submits a job (`Prefer: wait`), follows it to its end by polling, then submits the
next, until the time is up; jobs in flight then get `--drain` seconds to end. A 429 is counted
and retried after a short jittered pause (shorter than Retry-After, to keep the pressure on).
At the end every accepted job is read back: one that is missing or never ended is lost.
Lost jobs and 5xx answers must both be 0 (the exit status says so).

    PYTHONPATH=. .venv/bin/python bench/load.py --duration 60 --clients 48     # its own stack
    PYTHONPATH=. .venv/bin/python bench/load.py --url http://127.0.0.1:8000   # a running one

Its own stack: redis-server, `--workers` Celery workers and the API under gunicorn, on
loopback, with a queue limit of `--queue-depth` so that more clients than slots means overload.

`--tenants`: two API keys. Key b's clients run as above twice, alone and then while key a's
`--flooders` submit jobs of 50, 500 and 5,000 characters as fast as the API takes them, never
waiting for one; the report is b's queue time (p50, p99) both ways, and how many jobs a had
waiting. Fair share should keep b's queue time near what it is alone:

    PYTHONPATH=. .venv/bin/python bench/load.py --tenants --worker-slots 64 --duration 60
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from bench.stack import Stack, local_stack, pick_model

ROOT = Path(__file__).resolve().parents[1]
FINAL = frozenset({"succeeded", "failed", "canceled", "timed_out", "expired"})
POLL_S = 0.1  # between reads of a job that outlived its `Prefer: wait`
TENANT_KEYS = ("bench-key-a", "bench-key-b")  # --tenants: a floods, b is measured


@dataclass(frozen=True)
class LoadConfig:
    """What the clients do and for how long."""

    url: str
    duration_s: float = 30.0  # clients submit new jobs for this long
    clients: int = 16  # concurrent clients, each with one job in flight
    model: str = "default"
    length: int = 200  # characters per job
    wait_s: float = 10.0  # `Prefer: wait` on each submit
    drain_s: float = 120.0  # time jobs in flight get to end after `duration_s`
    backoff_s: float = 0.1  # mean pause after a 429 before submitting again
    api_key: str = ""
    lengths: tuple[int, ...] = ()  # if set, each job's length is one of these, at random


@dataclass
class Tally:
    """What the clients saw, shared between their threads."""

    accepted: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # submit to succeeded, client side
    queue_times: list[float] = field(default_factory=list)  # server side, succeeded jobs
    rejected_429: int = 0
    errors_5xx: int = 0
    other_4xx: int = 0
    transport_errors: int = 0
    samples: list[str] = field(default_factory=list)  # a few unexpected answers, for the report
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, name: str, sample: str | None = None) -> None:
        """Add one to a counter, keeping a few examples of what went wrong."""
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)
            if sample is not None and len(self.samples) < 10:
                self.samples.append(sample)


@dataclass(frozen=True)
class LoadReport:
    """The figures of one run."""

    clients: int
    duration_s: float
    elapsed_s: float
    accepted: int
    statuses: dict[str, int]  # final status of the accepted jobs, read back at the end
    lost: list[str]  # accepted jobs missing or not ended after the drain
    jobs_per_s: float  # succeeded jobs per second of the run
    latency_s: dict[str, float]  # submit to succeeded: p50, p90, p99, max
    queue_time_s: dict[str, float]  # server side: p50, p99
    rejected_429: int
    errors_5xx: int
    other_4xx: int
    transport_errors: int
    samples: list[str]

    def lines(self) -> list[str]:
        """Return the report as text lines."""
        latency = ", ".join(f"{k} {v:.3f}" for k, v in self.latency_s.items())
        queue = ", ".join(f"{k} {v:.3f}" for k, v in self.queue_time_s.items())
        return [
            f"{self.clients} clients for {self.duration_s:g} s (run took {self.elapsed_s:.1f} s)",
            f"accepted {self.accepted} jobs; final statuses {self.statuses}",
            f"throughput {self.jobs_per_s:.2f} jobs/s (succeeded)",
            f"submit->succeeded s: {latency or 'none'}; server queue time s: {queue or 'none'}",
            f"429 answers {self.rejected_429}; 5xx answers {self.errors_5xx}; "
            f"other 4xx {self.other_4xx}; transport errors {self.transport_errors}",
            f"lost jobs {len(self.lost)}",
            *(f"  e.g. {sample}" for sample in self.samples),
        ]

    @property
    def ok(self) -> bool:
        """Return whether nothing was lost and no request got a 5xx."""
        return not self.lost and self.errors_5xx == 0


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (nearest rank) of some values."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary(values: list[float], points: tuple[float, ...]) -> dict[str, float]:
    """Return the percentiles `points` of some values (and their maximum), or {} if none."""
    if not values:
        return {}
    found = {f"p{q:g}": round(percentile(values, q), 4) for q in points}
    return found | {"max": round(max(values), 4)}


def follow(http: httpx.Client, job: dict[str, Any], until: float, tally: Tally) -> dict[str, Any]:
    """Poll a job until it ends or `until` (monotonic) passes; return it as last seen."""
    while job["status"] not in FINAL and time.monotonic() < until:
        time.sleep(POLL_S)
        try:
            response = http.get(f"/v1/jobs/{job['id']}")
        except httpx.TransportError as error:
            tally.count("transport_errors", f"GET: {error!r}")
            continue
        if response.status_code >= 500:
            tally.count("errors_5xx", f"GET {response.status_code}: {response.text[:200]}")
        elif response.status_code == 200:
            job = response.json()
    return job


def submit(
    http: httpx.Client, config: LoadConfig, tally: Tally, rng: random.Random | None = None
) -> dict[str, Any] | None:
    """Submit one job; return it if accepted, else count why not and return None."""
    headers = {"Prefer": f"wait={config.wait_s:g}"} if config.wait_s > 0 else {}
    length = rng.choice(config.lengths) if rng and config.lengths else config.length
    body = {"model": config.model, "length": length}
    try:
        response = http.post("/v1/jobs", json=body, headers=headers)
    except httpx.TransportError as error:
        tally.count("transport_errors", f"POST: {error!r}")
        return None
    if response.status_code == 201:
        job: dict[str, Any] = response.json()
        with tally.lock:
            tally.accepted.append(job["id"])
        return job
    if response.status_code == 429:
        tally.count("rejected_429")
    elif response.status_code >= 500:
        tally.count("errors_5xx", f"POST {response.status_code}: {response.text[:200]}")
    else:
        tally.count("other_4xx", f"POST {response.status_code}: {response.text[:200]}")
    return None


def run_client(config: LoadConfig, deadline: float, tally: Tally, seed: int) -> None:
    """Submit jobs one after another until `deadline`, following each to its end."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    timeout = httpx.Timeout(config.wait_s + 30.0)
    with httpx.Client(base_url=config.url, headers=headers, timeout=timeout) as http:
        while time.monotonic() < deadline:
            started = time.monotonic()
            job = submit(http, config, tally, rng)
            if job is None:
                time.sleep(config.backoff_s * (0.5 + rng.random()))
                continue
            job = follow(http, job, deadline + config.drain_s, tally)
            if job["status"] == "succeeded":
                with tally.lock:
                    tally.latencies.append(time.monotonic() - started)
                    tally.queue_times.append(job["metrics"]["queue_time_s"] or 0.0)


def read_back(config: LoadConfig, ids: list[str], tally: Tally) -> tuple[Counter[str], list[str]]:
    """Read every accepted job once more; return the count per status and the lost ids."""
    statuses: Counter[str] = Counter()
    lost = []
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    with httpx.Client(base_url=config.url, headers=headers, timeout=30.0) as http:
        for job_id in ids:
            response = http.get(f"/v1/jobs/{job_id}")
            if response.status_code >= 500:
                tally.count("errors_5xx", f"read back {response.status_code}")
            status = response.json().get("status") if response.status_code == 200 else None
            if status in FINAL:
                statuses[status] += 1
            else:
                lost.append(job_id)
    return statuses, lost


def run_load(config: LoadConfig) -> LoadReport:
    """Run the clients for the configured time, wait for their jobs, and report."""
    tally = Tally()
    started = time.monotonic()
    deadline = started + config.duration_s
    threads = [
        threading.Thread(target=run_client, args=(config, deadline, tally, index), daemon=True)
        for index in range(config.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(config.duration_s + config.drain_s + config.wait_s + 60.0)
    elapsed = time.monotonic() - started
    statuses, lost = read_back(config, list(tally.accepted), tally)
    return LoadReport(
        clients=config.clients,
        duration_s=config.duration_s,
        elapsed_s=round(elapsed, 2),
        accepted=len(tally.accepted),
        statuses=dict(statuses),
        lost=lost,
        jobs_per_s=round(statuses["succeeded"] / elapsed, 3),
        latency_s=summary(tally.latencies, (50, 90, 99)),
        queue_time_s=summary(tally.queue_times, (50, 99)),
        rejected_429=tally.rejected_429,
        errors_5xx=tally.errors_5xx,
        other_4xx=tally.other_4xx,
        transport_errors=tally.transport_errors,
        samples=tally.samples,
    )


FLOOD_LENGTHS = (50, 500, 5000)


def flood(config: LoadConfig, stop: threading.Event, tally: Tally, seed: int) -> None:
    """Submit jobs without waiting for any, until `stop` (a 429 pauses it briefly)."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {config.api_key}"}
    with httpx.Client(base_url=config.url, headers=headers, timeout=30.0) as http:
        while not stop.is_set():
            if submit(http, config, tally, rng) is None:
                stop.wait(config.backoff_s * (0.5 + rng.random()))


def waiting(url: str, api_key: str) -> int:
    """Return how many jobs a key has queued."""
    headers = {"Authorization": f"Bearer {api_key}"}
    queued: int = httpx.get(f"{url}/v1/usage", headers=headers, timeout=30.0).json()["queued"]
    return queued


def run_tenants(config: LoadConfig, flooders: int, flood_key: str) -> list[str]:
    """Run key b's clients alone, then beside key a's flood; return the report lines."""
    lines = []
    for with_flood in (False, True):
        stop, flood_tally = threading.Event(), Tally()
        flood_config = replace(
            config, api_key=flood_key, wait_s=0.0, lengths=FLOOD_LENGTHS, backoff_s=0.05
        )
        threads = [
            threading.Thread(target=flood, args=(flood_config, stop, flood_tally, i), daemon=True)
            for i in range(flooders if with_flood else 0)
        ]
        for thread in threads:
            thread.start()
        if threads:
            time.sleep(min(10.0, config.duration_s / 4))  # let a's queue build up first
        report = run_load(config)
        backlog = waiting(config.url, flood_key)
        stop.set()
        for thread in threads:
            thread.join(60)
        queue = ", ".join(f"{k} {v:.3f}" for k, v in report.queue_time_s.items())
        lines.append(
            f"key b {'beside key a' + chr(39) + 's flood' if with_flood else 'alone'}: "
            f"{report.accepted} jobs, queue time s: {queue or 'none'}; "
            f"429 {report.rejected_429}, 5xx {report.errors_5xx}, lost {len(report.lost)}"
        )
        if with_flood:
            lines.append(
                f"key a: {len(flood_tally.accepted)} jobs accepted, {flood_tally.rejected_429} "
                f"answers of 429, {backlog} still waiting when b's clients stopped"
            )
        if not report.ok:
            lines.append("FAILED: b lost jobs or got 5xx answers")
    return lines


def main() -> int:
    """Parse arguments, start a stack unless given one, run the load, print the report."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="load a running API instead of starting a stack")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of submitting")
    parser.add_argument("--clients", type=int, default=48, help="concurrent clients")
    parser.add_argument("--length", type=int, default=200, help="characters per job")
    parser.add_argument("--wait", type=float, default=10.0, help="Prefer: wait on each submit")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds jobs get to end")
    parser.add_argument("--model", default="default")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")
    stack = parser.add_argument_group("its own stack (without --url)")
    stack.add_argument("--model-dir", default=str(ROOT / "models"))
    stack.add_argument("--workers", type=int, default=1, help="generation worker processes")
    stack.add_argument("--worker-slots", type=int, default=8)
    stack.add_argument("--queue-depth", type=int, default=16, help="queued jobs before 429")
    tenants = parser.add_argument_group("two tenants")
    tenants.add_argument("--tenants", action="store_true", help="key b alone, then beside a flood")
    tenants.add_argument("--flooders", type=int, default=8, help="key a's submitting clients")
    args = parser.parse_args()
    settings = {
        "LSTMGEN_MAX_QUEUE_DEPTH": str(args.queue_depth),
        "LSTMGEN_API_THREADS": str(max(32, args.clients + args.flooders + 8)),
    }
    if args.tenants:
        settings |= {
            "LSTMGEN_API_KEYS": f"a:{TENANT_KEYS[0]},b:{TENANT_KEYS[1]}",
            "LSTMGEN_MAX_QUEUE_DEPTH": "1000000",
            "LSTMGEN_KEY_MAX_QUEUED": "1000000",
            "LSTMGEN_KEY_SUBMIT_RATE": "0",
        }
        args.api_key = TENANT_KEYS[1]
    with ExitStack() as stack_context:
        url = args.url
        if not url:
            model_dir, args.model = pick_model(Path(args.model_dir), args.model)
            local = Stack(
                model_dir, [args.model], workers=args.workers, worker_slots=args.worker_slots,
                appendonly=True, name="load", settings=settings,
            )  # fmt: skip
            url = stack_context.enter_context(local_stack(local)).url
        config = LoadConfig(
            url=url, duration_s=args.duration, clients=args.clients, model=args.model,
            length=args.length, wait_s=args.wait, drain_s=args.drain, api_key=args.api_key,
        )  # fmt: skip
        if args.tenants:
            config = replace(config, lengths=FLOOD_LENGTHS)
            print("\n".join(run_tenants(config, args.flooders, TENANT_KEYS[0])))
            return 0
        report = run_load(config)
    print("\n".join(report.lines()))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
