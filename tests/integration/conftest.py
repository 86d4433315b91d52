"""Fixtures that start the service's own processes against the session's redis-server.

`start_worker(**settings)`, `start_api(**settings)` and `start_webhook_worker(**settings)`
start `celery` and `gunicorn` subprocesses; keyword arguments are settings fields
(`worker_slots=4` becomes `LSTMGEN_WORKER_SLOTS=4`). Everything they start stops at the end of
the test module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import redis

from scripts.redis_server import RedisServer, free_port
from tests.conftest import BIN, ROOT, wait_for

START_TIMEOUT_S = 180.0  # the first worker may compile the engine's kernels


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


class StartWebhookWorker(Protocol):
    """Start a webhook worker with some settings; return it once its scheduler runs."""

    def __call__(self, **settings: Any) -> ServiceProcess: ...


@pytest.fixture(scope="module")
def start_webhook_worker(
    redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartWebhookWorker]:
    """Yield a factory of `celery ... worker --webhooks` subprocesses, stopped after the module."""
    started: list[ServiceProcess] = []
    logs = tmp_path_factory.mktemp("webhook-worker-logs")

    def start(**settings: Any) -> ServiceProcess:
        settings.setdefault("worker_slots", 8)
        env = service_env(redis_server.url, model_dir, settings)
        name = f"webhooks-{uuid.uuid4().hex[:6]}"
        command = [
            str(BIN / "celery"), "-A", "worker.celery_worker", "worker", "--webhooks",
            "--hostname", f"{name}@lstmgen-test", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        log_path = logs / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        handle = ServiceProcess("webhook worker", process, log_path, env)
        started.append(handle)

        def scheduling() -> bool:
            if not handle.alive():
                pytest.fail(f"webhook worker exited:\n{handle.log()[-3000:]}")
            return "webhook scheduler started" in handle.log()

        wait_for(scheduling, START_TIMEOUT_S, "the webhook worker's scheduler")
        return handle

    yield start
    for handle in reversed(started):
        handle.stop()
