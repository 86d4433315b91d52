"""Run the whole stack here: Redis, the workers (generation, webhooks, training), the API.

Used by `make run`. A process that exits is restarted (with backoff) unless it crash-loops;
Ctrl-C (or SIGTERM) stops everything it started, in reverse order.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import redis

from scripts.redis_server import RedisServer, free_port
from scripts.supervisor import Child, CrashLoop, Supervisor
from shared.engine.registry import ModelRegistry
from shared.logs import setup_logging
from shared.redis_connection import connect
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
log = logging.getLogger("lstmgen.run")


def start(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start one child process of the stack in its own process group."""
    log.debug("starting %s: %s", name, " ".join(command))
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def redis_reachable(url: str, master: str = "") -> bool:
    """Return whether a Redis server (or the primary the sentinels name) answers at the URL."""
    client = connect(url, master, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def training_installed() -> bool:
    """Return whether TensorFlow can be imported here (without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


def stack_commands(settings: Settings, quiet: bool) -> list[tuple[str, list[str]]]:
    """Return the (name, command) of every service process, workers before the API."""
    banner = ["--quiet"] if quiet else []  # the console shows one line per process instead
    celery = [
        str(BIN / "celery"), "-A", "worker.celery_worker", *banner, "worker", "--loglevel", "INFO",
    ]  # fmt: skip
    commands = [
        (f"generation worker {i + 1}", [*celery, "--hostname", f"gen{i + 1}@%h"])
        for i in range(settings.workers)
    ]
    commands.append(("webhook worker", [*celery, "--hostname", "webhooks@%h", "--webhooks"]))
    if training_installed():
        commands.append(("training worker", [*celery, "--hostname", "training@%h", "--training"]))
    gunicorn = [str(BIN / "gunicorn"), "-c", "api/gunicorn_conf.py", "api.wsgi:app"]
    commands.append(("api", gunicorn))
    return commands


def main() -> int:
    """Start the stack, print its URL, and wait for Ctrl-C."""
    settings = Settings()
    # A person at a terminal gets short lines unless they chose a format (json in production).
    log_format = settings.log_format if "log_format" in settings.model_fields_set else "console"
    setup_logging(log_format)
    env = {**os.environ, "LSTMGEN_LOG_FORMAT": log_format}
    models = ModelRegistry(settings.model_dir).names()
    if not models:
        log.error("no models in %s: run `make default-model` first", settings.model_dir)
        return 1
    redis_server: RedisServer | None = None
    if "LSTMGEN_REDIS_URL" not in os.environ:
        data = settings.data_dir / "redis"
        redis_server = RedisServer(ROOT / data, port=default_redis_port()).start()
        env["LSTMGEN_REDIS_URL"] = redis_server.url
        log.info("redis-server up at %s (append-only file in %s)", redis_server.url, data)
    elif not redis_reachable(settings.redis_url, settings.redis_sentinel_master):
        log.error("LSTMGEN_REDIS_URL=%s is not reachable", settings.redis_url)
        return 1
    commands = stack_commands(settings, quiet=log_format == "console")
    supervisor = Supervisor(
        [Child(name, command) for name, command in commands],
        lambda child: start(child.name, child.command, env),
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    status = 0
    try:
        supervisor.start()
        announced = False
        while not stop.wait(0.5):
            supervisor.check(time.monotonic())
            if not announced and ready(settings.base_url):
                log.info(
                    "lstmgen is up at %s (models: %s); Ctrl-C stops it",
                    settings.base_url,
                    ", ".join(models),
                )
                announced = True
    except CrashLoop as loop:
        log.error("%s", loop)
        status = 1
    finally:
        supervisor.stop()
        if redis_server is not None:
            redis_server.stop()
        log.info("stopped")
    return status


def default_redis_port() -> int:
    """Return 6379 when nothing listens there, else a free port."""
    with socket.socket() as sock:
        taken = sock.connect_ex(("127.0.0.1", 6379)) == 0
    return free_port() if taken else 6379


def ready(base_url: str) -> bool:
    """Return whether /readyz answers 200 (models loaded, a worker up)."""
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
