"""Fixtures that start the service's own processes against the session's redis-server.

`start_worker(**settings)`, `start_api(**settings)` and `start_webhook_worker(**settings)`
start `celery` and `gunicorn` subprocesses; keyword arguments are settings fields
(`worker_slots=4` becomes `LSTMGEN_WORKER_SLOTS=4`). Everything they start stops at the end of
the test module.

Tests that race a job (cancel it, kill or stop its worker, time it out, deliver it twice) hold
the other side with a barrier instead of trusting timing: `paused(worker)` freezes a worker's
whole process group (SIGSTOP, then SIGCONT however the block ends) and `wait_record` waits for
what Redis records about a job, such as `cancel_requested` or a second attempt.
"""

from __future__ import annotations

import contextlib
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
from shared import metrics
from shared.jobs.keys import job_key
from shared.redis_connection import connect
from tests.conftest import BIN, ROOT, wait_for

START_TIMEOUT_S = 180.0  # the first worker may compile the engine's kernels
STOPPED_STATES = frozenset("TtZX")  # /proc states of a thread that runs no more code


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

    def pids(self) -> list[int]:
        """Return the processes of the group (the process and whatever it started)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _read_stat(entry / "stat")
                if stat is not None and int(stat[2]) == self.process.pid:
                    found.append(int(entry.name))
        return found

    def stopped(self) -> bool:
        """Return whether every thread of every process of the group is stopped."""
        for pid in self.pids():
            for task in Path(f"/proc/{pid}/task").glob("*/stat"):
                stat = _read_stat(task)
                if stat is not None and stat[0] not in STOPPED_STATES:
                    return False
        return True

    @contextlib.contextmanager
    def paused(self, timeout: float = 10.0) -> Iterator[None]:
        """Stop the whole group (SIGSTOP) for the block; it continues (SIGCONT) however the
        block ends, so a failing test leaves no frozen process to the next one."""
        self.signal(signal.SIGSTOP)
        try:
            # kill() only queues the signal: wait until no thread can run any more.
            wait_for(self.stopped, timeout, f"{self.name} {self.process.pid} to stop")
            yield
        finally:
            self.signal(signal.SIGCONT)


@dataclass
class WorkerHandle(ServiceProcess):
    """A Celery generation worker."""

    hostname: str = ""
    redis_url: str = ""
    worker_id: str = ""  # what job records name it by, known once it is ready

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> WorkerHandle:
        """Wait until the worker has loaded its models and sends heartbeats."""
        client = connect(self.redis_url, self.env.get("LSTMGEN_REDIS_SENTINEL_MASTER", ""))
        try:

            def ready() -> bool:
                if not self.alive():
                    pytest.fail(f"worker {self.hostname} exited:\n{self.log()[-3000:]}")
                # The process names itself "<hostname>/<token>" in its heartbeat.
                mine = [
                    name
                    for name in client.smembers(metrics.WORKER_INDEX)  # type: ignore[union-attr]
                    if name.startswith(self.hostname + "/")
                    and client.exists(metrics.WORKER_PREFIX + name)
                ]
                if mine:
                    self.worker_id = mine[0]
                return bool(mine)

            wait_for(ready, timeout, f"worker {self.hostname} to be ready")
        finally:
            client.close()
        return self

    @property
    def heartbeat_key(self) -> str:
        """Return the key of this worker's heartbeat."""
        return metrics.WORKER_PREFIX + self.worker_id

    def blocked_in_redis(self, client: redis.Redis) -> bool:
        """Return whether one of this worker's Redis connections waits in a blocking command.

        A stopped worker's BRPOP stays pending in Redis until its timeout (kombu: 1 s), and
        Redis hands a message pushed meanwhile to that connection: the frozen worker would hold
        it, unseen, until it continues. Once this is False, a paused worker receives nothing.
        """
        ports = _local_tcp_ports(self.pids())
        for entry in client.client_list():
            _, _, port = str(entry.get("addr", "")).rpartition(":")
            if "b" in str(entry.get("flags", "")) and port.isdigit() and int(port) in ports:
                return True
        return False


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


def _read_stat(path: Path) -> list[str] | None:
    """Return the fields of a /proc stat file after the command name (state first), or None
    if the process or thread is gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _local_tcp_ports(pids: list[int]) -> set[int]:
    """Return the local ports of the TCP sockets these processes hold."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[9] in inodes:
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def job_record(client: redis.Redis, job_id: str) -> dict[str, str]:
    """Return a job's record hash in Redis (`lstmgen:job:{id}`), empty if there is none."""
    found: dict[str, str] = client.hgetall(job_key(job_id))  # type: ignore[assignment]
    return found


def wait_record(
    client: redis.Redis, job_id: str, timeout: float = 30.0, **fields: str
) -> dict[str, str]:
    """Wait until a job's record in Redis holds these field values; return the record.

    `client` must decode responses (the `redis_client` fixture does).
    """

    def holds() -> dict[str, str] | None:
        found = job_record(client, job_id)
        return found if all(found.get(k) == v for k, v in fields.items()) else None

    wanted = ", ".join(f"{k}={v}" for k, v in fields.items())
    record: dict[str, str] = wait_for(holds, timeout, f"job {job_id} to record {wanted}")
    return record


def wait_running(
    client: redis.Redis, job_id: str, attempt: int = 1, timeout: float = 30.0
) -> dict[str, str]:
    """Wait until this attempt of a job runs and has flushed output; return its record."""

    def running() -> dict[str, str] | None:
        found = job_record(client, job_id)
        started = found.get("status") == "running" and found.get("attempts") == str(attempt)
        return found if started and int(found.get("done", "0")) > 0 else None

    record: dict[str, str] = wait_for(running, timeout, f"attempt {attempt} of {job_id} to run")
    return record


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


@pytest.fixture(scope="module")
def worker(start_worker: StartWorker) -> WorkerHandle:
    """Start one worker serving `tiny`, once for the module (a module may define its own)."""
    return start_worker(worker_models="tiny")


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
        env = service_env(settings.pop("redis_url", redis_server.url), model_dir, settings)
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


class StartTrainingWorker(Protocol):
    """Start a training worker with some settings; return it once Celery is ready."""

    def __call__(self, **settings: Any) -> ServiceProcess: ...


@pytest.fixture(scope="module")
def start_training_worker(
    redis_server: RedisServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartTrainingWorker]:
    """Yield a factory of `celery ... worker --training` subprocesses, stopped after the module."""
    started: list[ServiceProcess] = []
    logs = tmp_path_factory.mktemp("training-worker-logs")

    def start(**settings: Any) -> ServiceProcess:
        settings.setdefault("worker_slots", 1)
        env = service_env(settings.pop("redis_url", redis_server.url), model_dir, settings)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("TF_NUM_INTRAOP_THREADS", "1")
        name = f"training-{uuid.uuid4().hex[:6]}"
        command = [
            str(BIN / "celery"), "-A", "worker.celery_worker", "worker", "--training",
            "--hostname", f"{name}@lstmgen-test", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        log_path = logs / f"{name}.log"
        handle = ServiceProcess("training worker", _spawn(command, env, log_path), log_path, env)
        started.append(handle)

        def ready() -> bool:
            if not handle.alive():
                pytest.fail(f"training worker exited:\n{handle.log()[-3000:]}")
            return " ready." in handle.log()

        wait_for(ready, START_TIMEOUT_S, "the training worker to be ready")
        return handle

    yield start
    for handle in reversed(started):
        handle.stop()
