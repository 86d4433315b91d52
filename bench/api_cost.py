"""Measure what the API's requests cost in CPU, the cores it shares with the step.

Against a stack like `make run`'s (one worker, two API processes) serving ml5_darwin:
1. a fresh API: 64 submissions at once, as bench/end_to_end.py's clients send them: the CPU
   the API and redis-server used, and when the last was answered;
2. the same API warm: `--requests` submissions one after another on one connection;
3. `--requests` polls of one finished 20,000-character job on one connection.
Each line gives the API's and redis-server's CPU per request (read from /proc).

    PYTHONPATH=. .venv/bin/python bench/api_cost.py [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bench.end_to_end import Connection, cpu_seconds, stack_processes
from bench.stack import Stack, local_stack, reference_models

MODEL = "ml5_darwin"
LENGTH = 20_000  # the polled job's output
AT_ONCE = 64


def main() -> int:
    """Start the stack, run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    model_dir = reference_models([MODEL], "api-cost")
    unlimited = {"LSTMGEN_KEY_SUBMIT_RATE": "0"}  # no 429 for submitting faster than a user
    with local_stack(Stack(model_dir, [MODEL], settings=unlimited, name="cost")) as running:
        pids = stack_processes(running)

        def measured(what: str, count: int, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
            before = {kind: sum(map(cpu_seconds, pids[kind])) for kind in ("api", "redis")}
            started = time.perf_counter()
            asyncio.run(run())
            wall = time.perf_counter() - started
            used = {kind: sum(map(cpu_seconds, pids[kind])) - before[kind] for kind in before}
            print(
                f"{what}: {count} in {wall:.2f} s; CPU per request: "
                f"API {1e3 * used['api'] / count:.2f} ms, "
                f"redis {1e3 * used['redis'] / count:.2f} ms (API {used['api']:.2f} s in all)"
            )

        async def submit(http: Connection, length: int, seed: int) -> str:
            body = {"model": MODEL, "length": length, "random_seed": seed}
            status, job = await http.request("POST", "/v1/jobs", body)
            if status != 201:
                raise RuntimeError(f"POST /v1/jobs answered {status}: {job}")
            return str(job["id"])

        async def at_once() -> None:
            connections = [await Connection.open(running.url) for _ in range(AT_ONCE)]
            await asyncio.gather(*(submit(c, 5, i) for i, c in enumerate(connections)))
            for http in connections:
                await http.close()

        async def one_by_one() -> None:
            http = await Connection.open(running.url)
            for index in range(args.requests):
                await submit(http, 5, index)
            await http.close()

        job_id = ""

        async def finished_job() -> None:
            nonlocal job_id
            http = await Connection.open(running.url)
            job_id = await submit(http, LENGTH, 1)
            while (await http.request("GET", f"/v1/jobs/{job_id}"))[1]["status"] != "succeeded":
                await asyncio.sleep(0.2)
            await http.close()

        async def polls() -> None:
            http = await Connection.open(running.url)
            for _ in range(args.requests):
                status, job = await http.request("GET", f"/v1/jobs/{job_id}")
                assert status == 200 and len(job["output"]) == LENGTH
            await http.close()

        measured(f"fresh API, {AT_ONCE} submissions at once", AT_ONCE, at_once)
        measured("submissions one by one", args.requests, one_by_one)
        asyncio.run(finished_job())
        measured(f"polls of a finished {LENGTH:,}-character job", args.requests, polls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
