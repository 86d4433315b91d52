"""Measure the footprint: worker RSS with every reference model, its ready time, API RSS.

Starts a local redis-server, one generation worker serving all ten reference models of
../shared/models (defaults otherwise), and the API (gunicorn, its default processes); prints
- worker ready: seconds from starting the process to its first heartbeat (models loaded and
  their kernels run once: what `make run` waits for), and its RSS then;
- API: the RSS of each gunicorn process after listing every model and validating a job of each
  (their vocabularies loaded).
Targets: worker ready <= 5 s and RSS <= 250 MB, API processes <= 100 MB each. Exits 1 if one is
not met. Run it after `make install` (which compiles the kernels ahead).

    PYTHONPATH=. .venv/bin/python bench/footprint.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench.stack import BIN, ROOT, SHARED_MODELS, healthy, spawn, stop, wait_until
from scripts.redis_server import RedisServer, free_port
from shared.metrics import live_workers

READY_TARGET_S = 5.0
WORKER_TARGET_MB = 250.0
API_TARGET_MB = 100.0


def rss_mb(pid: int) -> float:
    """Return a process's resident set size in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    """Return the ids of a process's direct children."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def main() -> int:
    """Start the worker and the API, measure them, print the figures."""
    models_dir = SHARED_MODELS.resolve()
    if not models_dir.is_dir():
        sys.exit(f"bench/footprint.py: {models_dir} not found (the reference models)")
    work = Path(tempfile.mkdtemp(prefix="lstmgen-footprint-"))
    port = free_port()
    with RedisServer(work / "redis", appendonly=False) as server:
        env = {key: value for key, value in os.environ.items() if not key.startswith("LSTMGEN_")}
        env.update(
            PYTHONPATH=str(ROOT), LSTMGEN_REDIS_URL=server.url, LSTMGEN_PORT=str(port),
            LSTMGEN_MODEL_DIR=str(models_dir), LSTMGEN_LOG_FORMAT="text",
        )  # fmt: skip
        client = redis.Redis.from_url(server.url)
        celery = [str(BIN / "celery"), "-A", "worker.celery_worker", "worker", "--loglevel",
                  "WARNING", "--hostname", "footprint@local"]  # fmt: skip
        started = time.monotonic()
        worker = spawn(celery, env, work / "worker.log")
        try:
            wait_until(lambda: live_workers(client), 300, "the worker")
            ready_s = time.monotonic() - started
            worker_mb = rss_mb(worker.pid)
            api = spawn(
                [str(BIN / "gunicorn"), "-c", "api/gunicorn_conf.py", "api.wsgi:app"],
                env,
                work / "api.log",
            )
            try:
                url = f"http://127.0.0.1:{port}"
                wait_until(lambda: healthy(url), 60, "the API")
                api_mb = exercise_api(url, api.pid)
            finally:
                stop(api)
            loaded = len(next(iter(live_workers(client).values())).get("batches", {}))
        finally:
            stop(worker)
    print(f"worker ({loaded} models): ready in {ready_s:.1f} s, RSS {worker_mb:.0f} MB")
    print("API processes RSS: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in api_mb))
    met = [
        ("worker ready", ready_s <= READY_TARGET_S, f"<= {READY_TARGET_S:g} s"),
        ("worker RSS", worker_mb <= WORKER_TARGET_MB, f"<= {WORKER_TARGET_MB:g} MB"),
        ("API RSS", all(mb <= API_TARGET_MB for _, mb in api_mb), f"<= {API_TARGET_MB:g} MB"),
    ]
    for what, ok, target in met:
        print(f"{what} {target}: {'met' if ok else 'NOT met'}")
    return 0 if all(ok for _, ok, _ in met) else 1


def exercise_api(url: str, master: int) -> list[tuple[str, float]]:
    """List and describe every model through each API process, validate a job, return RSS."""
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(8):  # requests spread over the processes
            names = [m["name"] for m in http.get("/v1/models").json()["models"]]
            for name in names:
                http.get(f"/v1/models/{name}")
                http.post("/v1/jobs", json={"model": name, "seed": "\x00", "length": 1})
    workers = children(master)
    return [("master", rss_mb(master))] + [
        (f"worker {i + 1}", rss_mb(p)) for i, p in enumerate(workers)
    ]


if __name__ == "__main__":
    sys.exit(main())
