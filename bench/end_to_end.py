"""Measure jobs end to end as a user sees them, beside the engine alone and the in-flight rate.

64 concurrent jobs of 20,000 characters on ml5_darwin, each submitted over HTTP by its own
client (an asyncio task on its own keep-alive connection) that then polls `GET /v1/jobs/{id}`
twice a second until the job is final, against a stack like `make run`'s (one worker, default
settings, the API's default processes):
- end to end: characters of all jobs / seconds from the first submission to the last
  completion (as recorded; and as the polling clients saw it);
- in flight: characters/s while every job ran (from the records' progress);
- engine: `Batch` stepping 64 sequences in this process (no queue, no service);
- CPU seconds each process of the stack used during the run, and the cores' idle seconds, so
  what shares the cores with the step is named.

    PYTHONPATH=. .venv/bin/python bench/end_to_end.py [--jobs 64] [--length 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from bench.batching import Sample, engine_rate, read_progress
from bench.stack import Running, Stack, local_stack, reference_models
from shared.engine.loaders import load_model
from shared.jobs.keys import job_key

MODEL = "ml5_darwin"
POLL_S = 0.5  # each client's polling period
TARGET = 0.8  # end to end / engine
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def idle_seconds() -> float:
    """Return the seconds all cores have spent idle (or waiting on I/O) since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / TICKS


def stack_processes(running: Running) -> dict[str, list[int]]:
    """Find a stack's processes: the API's by its port setting, redis-server by its port."""
    port = int(running.url.rsplit(":", 1)[1])
    redis_port = int(running.redis_url.rsplit(":", 1)[1].split("/")[0])
    found: dict[str, list[int]] = {"worker": [], "api": [], "redis": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LSTMGEN_PORT={port}".encode() in environ:
            kind = "worker" if "celery" in command else "api" if "gunicorn" in command else None
            if kind:
                found[kind].append(int(entry.name))
        elif "redis-server" in command and f":{redis_port}" in command:
            found["redis"].append(int(entry.name))
    return found


class Connection:
    """One client's keep-alive HTTP/1.1 connection, speaking just what the bench needs.

    A load generator should cost the machine it shares with the service as little as it can
    (as `wrk` is written in C): 64 `httpx` clients on threads took 2.3-2.5 of the run's 11.4
    core-seconds, several ms a poll with 64 threads taking turns on one GIL; these take 0.2-0.4
    in all. Each client still sends every request and reads and decodes every answer, the
    whole job with its output so far.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, url: str) -> Connection:
        """Connect to the API at `url`."""
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, parts.netloc)

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """Send one request; return the status code and the decoded JSON answer."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if payload:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\n\r\n"
        self.writer.write(head.encode() + payload)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, json.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        await self.writer.wait_closed()


async def poll_jobs(url: str, jobs: int, length: int, ids: list[str]) -> tuple[float, float]:
    """Submit the jobs from concurrent clients that poll them (each id is appended to `ids` once
    submitted); return when the first submission started and the last completion was seen.

    Every client connects before the first submission: connecting is the client's start, not
    the service's work.
    """
    connections = [await Connection.open(url) for _ in range(jobs)]

    async def client(index: int, http: Connection) -> float:
        body = {"model": MODEL, "length": length, "random_seed": index}
        status, job = await http.request("POST", "/v1/jobs", body)
        if status != 201:
            raise RuntimeError(f"POST /v1/jobs answered {status}: {job}")
        job_id = str(job["id"])
        ids.append(job_id)
        while job["status"] in ("queued", "running"):
            await asyncio.sleep(POLL_S)  # the client's polling period, not a wait for the service
            status, job = await http.request("GET", f"/v1/jobs/{job_id}")
            if status != 200:
                raise RuntimeError(f"GET /v1/jobs/{job_id} answered {status}: {job}")
        return time.time()

    started = time.time()
    try:
        seen = await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
    finally:
        for http in connections:
            await http.close()
    return started, max(seen)


def main() -> int:
    """Run the jobs through a local stack and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--length", type=int, default=20_000)
    args = parser.parse_args()
    model_dir = reference_models([MODEL], "e2e")
    engine = engine_rate(load_model(model_dir / MODEL), args.jobs, 2.0, 3)
    stack = Stack(model_dir, [MODEL], name="e2e")  # the settings' defaults, as under make run
    with local_stack(stack) as running:
        client = redis.Redis.from_url(running.redis_url, decode_responses=True)
        pids = stack_processes(running)
        before = {kind: sum(cpu_seconds(p) for p in found) for kind, found in pids.items()}
        own_before, idle_before = time.process_time(), idle_seconds()
        samples: list[Sample] = []
        ids: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.25):
                if len(ids) == args.jobs:
                    samples.append(read_progress(client, ids))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started, seen = asyncio.run(poll_jobs(running.url, args.jobs, args.length, ids))
        stop.set()
        watcher.join()
        used = {
            kind: sum(cpu_seconds(p) for p in found) - before[kind] for kind, found in pids.items()
        }
        used["clients (this process)"] = time.process_time() - own_before
        used["idle"] = idle_seconds() - idle_before
        times = [
            client.hmget(job_key(i), ["created_at", "started_at", "completed_at"]) for i in ids
        ]
        created, began, ended = ([float(t[k] or 0) for t in times] for k in range(3))
        finished = max(ended)
    chars = args.jobs * args.length
    wall = finished - started
    end_to_end = chars / wall
    full = [s for s in samples if s.running == args.jobs]
    in_flight = (
        (full[-1].done - full[0].done) / (full[-1].at - full[0].at) if len(full) > 1 else 0.0
    )
    print(f"{MODEL}, {args.jobs} jobs x {args.length} chars, clients polling every {POLL_S} s")
    print(f"engine alone, {args.jobs} sequences: {engine:,.0f} chars/s")
    print(f"in flight (every job running): {in_flight:,.0f} chars/s = {in_flight / engine:.2f}")
    print(
        f"end to end (first submit -> last recorded completion): {wall:.1f} s, "
        f"{end_to_end:,.0f} chars/s = {end_to_end / engine:.2f} of engine (target {TARGET})"
    )
    seen_s = seen - started
    print(f"  as the polling clients saw it: {seen_s:.1f} s, {chars / seen_s:,.0f} chars/s")
    runs = [end - begin for begin, end in zip(began, ended, strict=True)]
    print(
        f"  submitted over {max(created) - started:.2f} s; the last job ran "
        f"{max(began) - started:.2f} s after the first submission; completions spread over "
        f"{finished - min(ended):.2f} s; a job ran {min(runs):.2f}-{max(runs):.2f} s"
    )
    print(
        f"CPU seconds until the clients saw the last completion ({seen_s:.1f} s x "
        f"{os.cpu_count()} cores):"
    )
    for kind, seconds in used.items():
        print(f"  {kind:24} {seconds:6.1f} s")
    return 0 if end_to_end / engine >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
