"""Benchmark the service end to end: many jobs through the API, one worker, a local Redis.

Starts redis-server, one Celery worker and the API (gunicorn) on loopback, then:
1. queue-path overhead: 1-character jobs one at a time, submit to succeeded;
2. throughput: `--jobs` jobs of `--length` characters from `--clients` concurrent clients,
   each submitting with `Prefer: wait` and polling until its job ends.
Reports jobs/s, p50/p99 submit-to-succeeded, lost jobs and 5xx answers (both must be 0).

    PYTHONPATH=. .venv/bin/python bench/service.py --jobs 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.stack import Stack, local_stack, pick_model

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"succeeded", "failed", "canceled", "timed_out", "expired"}


@dataclass
class Tally:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)  # submit to succeeded, seconds
    server_totals: list[float] = field(default_factory=list)  # the job's own total_time_s
    job_ids: list[str] = field(default_factory=list)
    errors_5xx: int = 0
    other_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_job(http: httpx.Client, body: dict[str, object], tally: Tally) -> None:
    """Submit one job, follow it to its end, and record what happened."""
    started = time.perf_counter()
    response = http.post("/v1/jobs", json=body, headers={"Prefer": "wait=60"})
    if response.status_code >= 500:
        with tally.lock:
            tally.errors_5xx += 1
        return
    if response.status_code not in (200, 201):
        with tally.lock:
            tally.other_errors.append(f"{response.status_code}: {response.text[:200]}")
        return
    job = response.json()
    while job["status"] not in FINAL:
        time.sleep(0.05)
        polled = http.get(f"/v1/jobs/{job['id']}")
        if polled.status_code >= 500:
            with tally.lock:
                tally.errors_5xx += 1
            continue
        job = polled.json()
    elapsed = time.perf_counter() - started
    with tally.lock:
        tally.job_ids.append(job["id"])
        if job["status"] == "succeeded":
            tally.latencies.append(elapsed)
            tally.server_totals.append(job["metrics"]["total_time_s"])


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (nearest rank) of the values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def overhead(url: str, model: str, samples: int) -> None:
    """Measure the queue path: 1-character jobs one at a time."""
    tally = Tally()
    with httpx.Client(base_url=url, timeout=120) as http:
        run_job(http, {"model": model, "length": 1}, tally)  # warm the path
        tally = Tally()
        for _ in range(samples):
            run_job(http, {"model": model, "length": 1}, tally)
    print(
        f"queue-path overhead (1-char job, {samples} sequential): "
        f"client p50 {statistics.median(tally.latencies) * 1000:.1f} ms, "
        f"p99 {percentile(tally.latencies, 99) * 1000:.1f} ms; "
        f"server-side submit->succeeded p50 {statistics.median(tally.server_totals) * 1000:.1f} ms"
    )


def throughput(url: str, args: argparse.Namespace) -> int:
    """Run the concurrent load and print its figures; return the number of problems."""
    tally = Tally()
    body = {"model": args.model, "length": args.length}
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=args.clients)
    with (
        httpx.Client(base_url=url, timeout=120, limits=limits) as http,
        ThreadPoolExecutor(args.clients) as pool,
    ):
        for future in [pool.submit(run_job, http, body, tally) for _ in range(args.jobs)]:
            future.result()
    wall = time.perf_counter() - started
    succeeded = len(tally.latencies)
    lost = args.jobs - succeeded
    print(
        f"{args.jobs} jobs x {args.length} chars, {args.clients} clients: {wall:.1f} s, "
        f"{succeeded / wall:.1f} jobs/s, {succeeded * args.length / wall:.0f} chars/s"
    )
    if tally.latencies:
        print(
            f"submit->succeeded: p50 {statistics.median(tally.latencies):.3f} s, "
            f"p99 {percentile(tally.latencies, 99):.3f} s "
            f"(server-side p50 {statistics.median(tally.server_totals):.3f} s)"
        )
    print(f"lost jobs: {lost}, 5xx: {tally.errors_5xx}, other errors: {len(tally.other_errors)}")
    for error in tally.other_errors[:5]:
        print("  ", error)
    return int(lost + tally.errors_5xx)


def main() -> int:
    """Parse arguments, start the stack, run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the throughput run")
    parser.add_argument("--length", type=int, default=200, help="characters per job")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--overhead-samples", type=int, default=50)
    parser.add_argument("--worker-slots", type=int, default=64)
    parser.add_argument("--model", default="default")
    parser.add_argument("--model-dir", default=str(ROOT / "models"))
    parser.add_argument("--url", help="benchmark a running API instead of starting a stack")
    args = parser.parse_args()
    if args.url:
        overhead(args.url, args.model, args.overhead_samples)
        return 1 if throughput(args.url, args) else 0
    model_dir, args.model = pick_model(Path(args.model_dir), args.model)
    stack = Stack(
        model_dir, [args.model], worker_slots=args.worker_slots,
        settings={"LSTMGEN_MAX_QUEUE_DEPTH": str(args.jobs * 2),
                  "LSTMGEN_API_THREADS": str(max(32, args.clients))},
    )  # fmt: skip
    with local_stack(stack) as running:
        url = running.url
        overhead(url, args.model, args.overhead_samples)
        problems = throughput(url, args)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
