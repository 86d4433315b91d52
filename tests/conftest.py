"""Shared fixtures: a real redis-server, tiny models, and real worker and API processes.

`start_worker(**settings)` and `start_api(**settings)` start `celery` and `gunicorn`
subprocesses against the session's redis-server; keyword arguments are settings fields
(`worker_slots=4` becomes `LSTMGEN_WORKER_SLOTS=4`). Everything they start stops at the end of
the test module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import pytest
import redis

from scripts.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180.0  # the first worker may compile the engine's kernels
TINY_VOCAB = list("\n abcdefghijklmnopqrstuvwxyz.,'!?")
TINY_MODELS = ("tiny", "tiny2", "tiny3")


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, message: str = "condition"
) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def write_tiny_model(folder: Path, seed: int = 0, units: int = 32, embedding: int = 8) -> Path:
    """Write a small random ml5-format model (one LSTM layer) that loads fast."""
    rng = np.random.default_rng(seed)
    vocab = len(TINY_VOCAB)
    variables = {
        "embedding": rng.normal(0, 1, (vocab, embedding)),
        "rnnlm/multi_rnn_cell/cell_0/basic_lstm_cell/kernel": rng.normal(
            0, 0.5, (embedding + units, 4 * units)
        ),
        "rnnlm/multi_rnn_cell/cell_0/basic_lstm_cell/bias": rng.normal(0, 0.3, 4 * units),
        "rnnlm/softmax_w": rng.normal(0, 1, (units, vocab)),
        "rnnlm/softmax_b": rng.normal(0, 0.3, vocab),
    }
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, array in variables.items():
        filename = name.replace("/", "_")
        (folder / filename).write_bytes(np.asarray(array, "<f4").tobytes())
        manifest[name] = {"filename": filename, "shape": list(np.shape(array))}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    vocab_ids = {char: index for index, char in enumerate(TINY_VOCAB)}
    (folder / "vocab.json").write_text(json.dumps(vocab_ids), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Return ../shared; skip without it, but fail in CI where it must be present."""
    if not (SHARED / "models").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED} is missing (CI=true needs the reference models)")
        pytest.skip(f"{SHARED} is missing")
    return SHARED.resolve()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a model directory holding the tiny models `tiny`, `tiny2` and `tiny3`."""
    folder = tmp_path_factory.mktemp("models")
    for index, name in enumerate(TINY_MODELS):
        write_tiny_model(folder / name, seed=index)
    return folder


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Start one redis-server for the test session."""
    with RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False) as server:
        yield server


def clean_store(client: redis.Redis) -> None:
    """Delete job records and metrics, keeping worker heartbeats and Celery's own keys."""
    for key in client.scan_iter(match="lstmgen:*", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        if not name.startswith("lstmgen:worker:"):
            client.delete(name)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """Return a client (strings decoded) of the session's Redis, job data flushed first."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    clean_store(client)
    yield client
    client.close()


@dataclass
class ServiceProcess:
    """A service subprocess (its own process group) with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def alive(self) -> bool:
        """Return whether the process still runs."""
        return self.process.poll() is None

    def log(self) -> str:
        """Return what the process wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, signum: int) -> None:
        """Send a signal to the process group."""
        if self.alive():
            os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop gracefully (SIGTERM), killing the group if it takes longer than `timeout`."""
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the process group at once (SIGKILL)."""
        self.signal(signal.SIGKILL)
        self.process.wait(10)


@dataclass
class WorkerHandle(ServiceProcess):
    """A Celery generation worker."""

    hostname: str = ""
    redis_url: str = ""

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> WorkerHandle:
        """Wait until the worker has loaded its models and sends heartbeats."""
        client = redis.Redis.from_url(self.redis_url)
        try:

            def ready() -> bool:
                if not self.alive():
                    pytest.fail(f"worker {self.hostname} exited:\n{self.log()[-3000:]}")
                return bool(client.exists(f"lstmgen:worker:{self.hostname}"))

            wait_for(ready, timeout, f"worker {self.hostname} to be ready")
        finally:
            client.close()
        return self


@dataclass
class ApiHandle(ServiceProcess):
    """The API under gunicorn."""

    port: int = 0
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Return the base URL of the API."""
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """Return an HTTP client of the API (closed when the API stops)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.clients.append(client)
        return client

    def wait_ready(self, timeout: float = 60.0) -> ApiHandle:
        """Wait until the API answers /healthz."""

        def healthy() -> bool:
            if not self.alive():
                pytest.fail(f"API exited:\n{self.log()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout, "the API to answer /healthz")
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Close the clients, then stop the server."""
        for client in self.clients:
            client.close()
        super().stop(timeout)


def service_env(redis_url: str, model_dir: Path, settings: dict[str, Any]) -> dict[str, str]:
    """Return the environment of a service process: ours, plus LSTMGEN_* from `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LSTMGEN_")}
    env.update(
        PYTHONPATH=str(ROOT),
        LSTMGEN_REDIS_URL=redis_url,
        LSTMGEN_MODEL_DIR=str(model_dir),
        LSTMGEN_LOG_FORMAT="text",
        # One engine thread per process: the test machine's cores are shared by everything.
        NUMBA_NUM_THREADS=env.get("NUMBA_NUM_THREADS", "1"),
    )
    for name, value in settings.items():
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        env[f"LSTMGEN_{name.upper()}"] = str(value)
    return env


class StartWorker(Protocol):
    """Start a generation worker with some settings; return its handle once it is ready."""

    def __call__(self, *, wait: bool = True, **settings: Any) -> WorkerHandle: ...


class StartApi(Protocol):
    """Start the API with some settings; return its handle once it answers."""

    def __call__(self, **settings: Any) -> ApiHandle: ...


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


@pytest.fixture(scope="module")
def start_worker(
    redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartWorker]:
    """Yield a factory of Celery worker subprocesses, all stopped after the module."""
    started: list[WorkerHandle] = []
    logs = tmp_path_factory.mktemp("worker-logs")

    def start(*, wait: bool = True, **settings: Any) -> WorkerHandle:
        settings.setdefault("worker_slots", 8)
        redis_url = settings.pop("redis_url", redis_server.url)
        hostname = f"w{len(started) + 1}-{uuid.uuid4().hex[:6]}@lstmgen-test"
        env = service_env(redis_url, settings.pop("model_dir", model_dir), settings)
        command = [
            str(BIN / "celery"), "-A", "worker.celery_worker", "worker", "--hostname", hostname,
            "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        log_path = logs / f"{hostname.split('@')[0]}.log"
        process = _spawn(command, env, log_path)
        handle = WorkerHandle("worker", process, log_path, env, hostname, redis_url)
        started.append(handle)
        return handle.wait_ready() if wait else handle

    yield start
    for handle in reversed(started):
        handle.stop()


@pytest.fixture(scope="module")
def start_api(
    redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartApi]:
    """Yield a factory of API (gunicorn) subprocesses, all stopped after the module."""
    started: list[ApiHandle] = []
    logs = tmp_path_factory.mktemp("api-logs")

    def start(**settings: Any) -> ApiHandle:
        port = free_port()
        settings.setdefault("api_processes", 1)
        settings.setdefault("api_threads", 16)
        settings["port"] = port
        redis_url = settings.pop("redis_url", redis_server.url)
        env = service_env(redis_url, settings.pop("model_dir", model_dir), settings)
        command = [str(BIN / "gunicorn"), "-c", "api/gunicorn_conf.py", "api.wsgi:app"]
        log_path = logs / f"api-{port}.log"
        handle = ApiHandle("api", _spawn(command, env, log_path), log_path, env, port)
        started.append(handle)
        return handle.wait_ready()

    yield start
    for handle in reversed(started):
        handle.stop()


# Modules that use these define `stack` (the API they test) themselves.
@pytest.fixture
def api(stack: ApiHandle, redis_client: redis.Redis) -> httpx.Client:
    """Return a client of the API over a flushed job store."""
    return stack.client()


@pytest.fixture(scope="module")
def spec(stack: ApiHandle) -> dict[str, Any]:
    """Return the API's OpenAPI document."""
    document: dict[str, Any] = httpx.get(f"{stack.url}/openapi.json").json()
    return document
