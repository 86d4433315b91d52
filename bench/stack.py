"""A local stack for benchmarks: redis-server, Celery workers and the API on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx
import redis

from scripts.redis_server import RedisServer, free_port
from shared.metrics import live_workers

ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = ROOT / ".." / "shared" / "models"
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    """What to start: the model folder, the served models, workers and extra settings."""

    model_dir: Path
    models: list[str]
    workers: int = 1
    worker_slots: int = 64
    settings: dict[str, str] = field(default_factory=dict)  # more LSTMGEN_* variables
    appendonly: bool = False
    name: str = "bench"  # worker hostnames are {name}{i}@local


class Running(NamedTuple):
    """A started stack: where its API and its Redis answer."""

    url: str
    redis_url: str


def reference_models(models: list[str], name: str) -> Path:
    """Return a new folder holding the reference models `models` of ../shared (as links), or
    exit naming the one that is missing."""
    for model in models:
        if not (SHARED_MODELS / model).is_dir():
            sys.exit(f"{SHARED_MODELS.resolve() / model} not found")
    folder = Path(tempfile.mkdtemp(prefix=f"lstmgen-{name}-models-"))
    for model in models:
        (folder / model).symlink_to(SHARED_MODELS.resolve() / model, target_is_directory=True)
    return folder


def pick_model(model_dir: Path, model: str) -> tuple[Path, str]:
    """Return the model folder and model to use: the one asked for, else a reference one."""
    if (model_dir / model).exists():
        return model_dir, model
    fallback = SHARED_MODELS / "ml5_darwin"
    if not fallback.is_dir():
        sys.exit(f"no model {model!r} in {model_dir} and no {fallback}")
    print(f"no model {model!r} in {model_dir}: using ml5_darwin from ../shared")
    return SHARED_MODELS.resolve(), "ml5_darwin"


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a service process in its own process group, logging to a file."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a service process group gracefully, then by force."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until(ready: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `ready()` until it is true, or exit after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


def healthy(url: str) -> bool:
    """Return whether the API answers /healthz."""
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def local_stack(stack: Stack) -> Iterator[Running]:
    """Start redis-server, the workers and the API; yield where they answer; stop them all."""
    work = Path(tempfile.mkdtemp(prefix=f"lstmgen-{stack.name}-"))
    port = free_port()
    with RedisServer(work / "redis", appendonly=stack.appendonly) as server, ExitStack() as procs:
        env = {key: value for key, value in os.environ.items() if not key.startswith("LSTMGEN_")}
        env.update(
            PYTHONPATH=str(ROOT), LSTMGEN_REDIS_URL=server.url, LSTMGEN_PORT=str(port),
            LSTMGEN_MODEL_DIR=str(stack.model_dir), LSTMGEN_WORKER_MODELS=",".join(stack.models),
            LSTMGEN_WORKER_SLOTS=str(stack.worker_slots), LSTMGEN_LOG_FORMAT="text",
            **stack.settings,
        )  # fmt: skip
        celery = [str(BIN / "celery"), "-A", "worker.celery_worker", "worker", "--loglevel",
                  "WARNING", "--without-mingle", "--without-gossip"]  # fmt: skip
        names = [f"{stack.name}{index + 1}@local" for index in range(stack.workers)]
        for name in names:
            procs.callback(stop, spawn([*celery, "--hostname", name], env, work / f"{name}.log"))
        gunicorn = [str(BIN / "gunicorn"), "-c", "api/gunicorn_conf.py", "api.wsgi:app"]
        procs.callback(stop, spawn(gunicorn, env, work / "api.log"))
        client = redis.Redis.from_url(server.url)

        def workers_up() -> bool:
            # Each worker process beats as "<hostname>/<token>".
            up = {worker.split("/")[0] for worker in live_workers(client)}
            return all(name in up for name in names)

        wait_until(workers_up, 300, "the workers")
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(url), 60, "the API")
        print(f"stack up: {stack.workers} worker(s) x {stack.worker_slots} slots, models "
              f"{', '.join(stack.models)} (logs in {work})")  # fmt: skip
        yield Running(url, server.url)
