"""Benchmark continuous batching: one worker process against the engine alone and the GEMM bound.

For ml5_bolano and ml5_darwin (read in place from ../shared/models) and 1, 16, 64 and 256
concurrent jobs, prints in one run:
- api: aggregate characters/s of that many jobs submitted through the API to ONE worker process
  (local redis-server, one Celery worker with worker_slots >= the most jobs, the API), from
  their recorded progress while every one of them runs (the jobs are endless and canceled
  afterwards), plus how long submitting and starting them took;
- engine: `shared.engine.Batch` stepping the same number of sequences in this process (no queue);
- bound: numpy's float32 GEMM rate, measured in this run on one thread and multiplied by the
  engine's threads, divided by the FLOPs per character.
Each rate is the best of a few windows (the machine may be shared). Floors: api/engine >= 70%
at 256 jobs; engine/bound >= 50% at 256 sequences of ml5_bolano. Exits 1 if one is not met.

    PYTHONPATH=. .venv/bin/python bench/batching.py [--quick]
    NUMBA_NUM_THREADS=1 ...  # engine and worker on one thread (and a one-core bound)
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import redis

from bench.stack import SHARED_MODELS, Stack, local_stack, wait_until
from shared import kernels
from shared.engine import Batch, SamplingParams
from shared.jobs import job_key
from shared.loaders import load_model
from shared.model import LSTMModel

MODELS = ("ml5_bolano", "ml5_darwin")
CONCURRENCY = (1, 16, 64, 256)
API_FLOOR = 0.70  # api / engine at the most jobs
BOUND_FLOOR = 0.50  # engine / bound at the most sequences of FLOOR_MODEL
FLOOR_MODEL = "ml5_bolano"
TEMPERATURE = 0.5
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
ENDLESS = 10**7  # job length: the jobs are canceled after the measurement windows


@dataclass(frozen=True)
class Row:
    """One model at one concurrency: the rates, in characters per second."""

    model: str
    jobs: int
    engine: float  # Batch alone, the same number of sequences
    api: float  # through the API, every job running
    bound: float  # GEMM rate / FLOPs per character


def flops_per_char(model: LSTMModel) -> int:
    """Return the multiply-adds x2 of one character: what a batched step must compute.

    The first layer's input product is a table lookup (a row per character, one-hot or
    embedding folded in), so it costs no FLOPs; every recurrent product, every upper layer's
    input product and the output layer count.
    """
    total = 0
    for index, layer in enumerate(model.layers):
        inputs = 0 if index == 0 else layer.input_size
        total += 2 * (inputs + layer.units) * 4 * layer.units
    rows, columns = model.output_kernel.shape
    return total + 2 * int(rows) * int(columns)


def gemm_rate(size: int, repeats: int, rounds: int) -> float:
    """Return numpy's best float32 [size x size] @ [size x size] rate in FLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm up the BLAS threads
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - started) / repeats)
    return 2 * size**3 / best


def single_thread_gemm_rate(quick: bool) -> float:
    """Measure the GEMM rate on one BLAS thread, in a fresh process.

    BLAS reads its thread count when it loads, hence the child process. One thread times the
    engine's threads is the bound: a threaded GEMM on a shared machine waits for its slowest
    thread and would understate it.
    """
    env = {**os.environ, **{name: "1" for name in BLAS_THREAD_VARIABLES}}
    command = [sys.executable, __file__, "--gemm", "quick" if quick else "full"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout)


def engine_rate(model: LSTMModel, sequences: int, seconds: float, windows: int) -> float:
    """Return the best characters/s of a Batch of `sequences` over a few windows, no queue."""
    batch = Batch(model, capacity=sequences)
    seed = model.encode(model.defaults.seed)
    params = SamplingParams(length=10**9, temperature=TEMPERATURE)
    for index in range(sequences):
        batch.add(index, seed, params, random_seed=index)
    batch.step()  # compiled kernels warm
    best = 0.0
    for _ in range(windows):
        steps = 0
        started = time.perf_counter()
        while steps < 2 or time.perf_counter() - started < seconds:
            batch.step()
            steps += 1
        best = max(best, sequences * steps / (time.perf_counter() - started))
    return best


@contextmanager
def batching_stack(models: list[str], slots: int) -> Iterator[tuple[str, redis.Redis]]:
    """Start one worker process serving the reference models, and the API; yield URL and Redis."""
    model_dir = Path(tempfile.mkdtemp(prefix="lstmgen-batching-models-"))
    for name in models:
        (model_dir / name).symlink_to(SHARED_MODELS.resolve() / name, target_is_directory=True)
    stack = Stack(
        model_dir, models, worker_slots=slots, name="batching",
        settings={"LSTMGEN_MAX_LENGTH": str(ENDLESS), "LSTMGEN_API_PROCESSES": "1",
                  "LSTMGEN_API_THREADS": "32"},
    )  # fmt: skip
    with local_stack(stack) as running:
        client = redis.Redis.from_url(running.redis_url, decode_responses=True)
        try:
            yield running.url, client
        finally:
            client.close()


@dataclass(frozen=True)
class Sample:
    """The jobs' recorded progress at one moment."""

    at: float  # Unix time of the reading
    done: int  # characters generated by all jobs, as last flushed by the worker
    running: int  # jobs running


@dataclass(frozen=True)
class ApiRun:
    """Characters/s of a set of jobs running at once in one worker, through the API."""

    rate: float  # the best window while every job ran
    submit_s: float  # submitting them all
    start_s: float  # from the first submit until every job ran


def read_progress(client: redis.Redis, ids: list[str]) -> Sample:
    """Read the status and recorded progress of every job in one round trip."""
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(job_key(job_id), ["status", "done"])
    records = pipe.execute()
    return Sample(
        time.time(),
        sum(int(done or 0) for _, done in records),
        sum(status == "running" for status, _ in records),
    )


def each_job(url: str, jobs: int, request: Callable[[httpx.Client, int], str]) -> list[str]:
    """Call the API once per job from concurrent clients; return what each call returned."""
    with (
        httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=32)) as http,
        ThreadPoolExecutor(min(jobs, 32)) as pool,
    ):
        return list(pool.map(lambda index: request(http, index), range(jobs)))


def api_rate(
    url: str, client: redis.Redis, model: str, jobs: int, seconds: float, windows: int
) -> ApiRun:
    """Run `jobs` endless jobs at once; measure their best speed over windows; cancel them."""
    body = {"model": model, "length": ENDLESS, "temperature": TEMPERATURE}

    def submit(http: httpx.Client, index: int) -> str:
        response = http.post("/v1/jobs", json={**body, "random_seed": index})
        response.raise_for_status()
        return str(response.json()["id"])

    started = time.time()
    ids = each_job(url, jobs, submit)
    submitted = time.time()
    # Progress comes from the records in Redis, in one round trip: polling every job over
    # HTTP would take CPU from the worker.
    wait_until(lambda: read_progress(client, ids).running == jobs, 600, "every job to run")
    samples = [read_progress(client, ids)]
    for _ in range(windows):
        time.sleep(seconds)  # a measurement window
        samples.append(read_progress(client, ids))
    each_job(url, jobs, lambda http, i: http.post(f"/v1/jobs/{ids[i]}/cancel").text)
    if samples[-1].running != jobs:
        sys.exit(f"only {samples[-1].running} of {jobs} jobs still ran after the windows")
    wait_until(lambda: read_progress(client, ids).running == 0, 120, "the jobs to stop")
    rate = max((b.done - a.done) / (b.at - a.at) for a, b in itertools.pairwise(samples))
    return ApiRun(rate, submitted - started, samples[0].at - started)


def measure(args: argparse.Namespace) -> list[Row]:
    """Measure every model and concurrency, printing each line as it is known."""
    models = {name: load_model(SHARED_MODELS / name) for name in args.models}
    threads = kernels.thread_count()
    single = single_thread_gemm_rate(args.quick)
    gemm = threads * single
    print(
        f"numpy float32 GEMM 1024^3 on one thread: {single / 1e9:.1f} GFLOP/s (best round); "
        f"x {threads} engine threads = {gemm / 1e9:.1f} GFLOP/s"
    )
    rows = []
    with batching_stack(list(args.models), max(args.jobs)) as (url, client):
        for name, model in models.items():
            flops = flops_per_char(model)
            print(
                f"{name}: {flops / 1e6:.3f} MFLOP per character (layer 0's input product is a "
                f"table lookup), bound {gemm / flops:.0f} c/s"
            )
            for jobs in args.jobs:
                engine = engine_rate(model, jobs, args.seconds, args.windows)
                run = api_rate(url, client, name, jobs, args.seconds, args.windows)
                rows.append(Row(name, jobs, engine, run.rate, gemm / flops))
                print(
                    f"  {jobs:>4} sequences: engine {engine:6.0f} c/s, api {run.rate:6.0f} c/s "
                    f"(submitted in {run.submit_s:.2f} s, all running {run.start_s:.2f} s "
                    "after the first submit)",
                    flush=True,
                )
    return rows


def report(rows: list[Row], most: int) -> bool:
    """Print the table and the floors; return whether both floors are met."""
    print()
    heads = ("api c/s", "engine c/s", "bound c/s", "api/engine", "engine/bound", "api/bound")
    print(f"{'model':<11} {'jobs':>4} " + " ".join(f"{h:>12}" for h in heads))
    for r in rows:
        print(
            f"{r.model:<11} {r.jobs:>4} {r.api:>12.0f} {r.engine:>12.0f} {r.bound:>12.0f} "
            f"{r.api / r.engine:>12.2f} {r.engine / r.bound:>12.3f} {r.api / r.bound:>12.3f}"
        )
    met = True
    for r in (r for r in rows if r.jobs == most):
        ok = r.api / r.engine >= API_FLOOR
        met &= ok
        print(f"floor {r.model}: api/engine at {most} jobs {r.api / r.engine:.0%} "
              f">= {API_FLOOR:.0%}: {'met' if ok else 'NOT met'}")  # fmt: skip
        if r.model == FLOOR_MODEL:
            ok = r.engine / r.bound >= BOUND_FLOOR
            met &= ok
            print(f"floor {r.model}: engine/bound at {most} sequences {r.engine / r.bound:.0%} "
                  f">= {BOUND_FLOOR:.0%}: {'met' if ok else 'NOT met'}")  # fmt: skip
    return met


def main() -> int:
    """Parse arguments, measure, print the table; exit 1 when a floor is not met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short measurements")
    parser.add_argument("--seconds", type=float, help="length of a measurement window")
    parser.add_argument("--windows", type=int, help="windows per measurement (the best counts)")
    parser.add_argument("--jobs", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--gemm", choices=("quick", "full"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gemm:  # the child process of single_thread_gemm_rate()
        print(gemm_rate(1024, 2, 15) if args.gemm == "quick" else gemm_rate(1024, 3, 30))
        return 0
    args.seconds = args.seconds or (1.5 if args.quick else 3.0)
    args.windows = args.windows or (2 if args.quick else 5)
    missing = [name for name in args.models if not (SHARED_MODELS / name).is_dir()]
    if missing:
        sys.exit(f"reference models missing in {SHARED_MODELS}: {', '.join(missing)}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, engine threads "
          f"{kernels.thread_count()} (NUMBA_NUM_THREADS, also given to the worker)")  # fmt: skip
    return 0 if report(measure(args), max(args.jobs)) else 1


if __name__ == "__main__":
    sys.exit(main())
