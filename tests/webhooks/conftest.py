"""Fixtures for webhook tests: a real receiver on loopback, Redis, and a webhook worker."""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis

from scripts.redis_server import RedisServer
from tests.conftest import BIN, ROOT, START_TIMEOUT_S, ServiceProcess, service_env, wait_for
from tests.webhooks.receiver import Receiver

SECRET_A = "whsec_" + base64.b64encode(b"first secret of thirty-two bytes").decode()
SECRET_B = "whsec_" + base64.b64encode(b"second secret, rotated in later!").decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Start an HTTP receiver on 127.0.0.1 for one test."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def webhook_redis(redis_client: redis.Redis) -> redis.Redis:
    """Return a client (strings decoded) of the session's Redis, job data flushed first."""
    return redis_client


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
