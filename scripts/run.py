"""Run the whole stack on this machine: Redis, generation workers, the webhook worker, the API.

Used by `make run`. Ctrl-C (or SIGTERM) stops everything it started, in reverse order.
"""

from __future__ import annotations

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
from shared.engine.registry import ModelRegistry
from shared.logs import setup_logging
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
log = logging.getLogger("lstmgen.run")


def start(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start one child process of the stack in its own process group."""
    log.debug("starting %s: %s", name, " ".join(command))
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def stop_all(children: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """Ask every child to stop (warm shutdown), then kill what is left after the timeout."""
    for child in reversed(children):
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in reversed(children):
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def redis_reachable(url: str) -> bool:
    """Return whether a Redis server answers at the URL."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


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
    elif not redis_reachable(settings.redis_url):
        log.error("LSTMGEN_REDIS_URL=%s is not reachable", settings.redis_url)
        return 1
    children: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        for name, command in stack_commands(settings, quiet=log_format == "console"):
            children.append(start(name, command, env))
        if wait_ready(settings.base_url, children, stop):
            log.info(
                "lstmgen is up at %s (models: %s); Ctrl-C stops it",
                settings.base_url,
                ", ".join(models),
            )
        while not stop.wait(0.2) and all(child.poll() is None for child in children):
            pass
        if not stop.is_set():
            log.error("a process of the stack exited; stopping the rest")
    finally:
        stop_all(children)
        if redis_server is not None:
            redis_server.stop()
        log.info("stopped")
    return 0


def default_redis_port() -> int:
    """Return 6379 when nothing listens there, else a free port."""
    with socket.socket() as sock:
        taken = sock.connect_ex(("127.0.0.1", 6379)) == 0
    return free_port() if taken else 6379


def wait_ready(
    base_url: str, children: list[subprocess.Popen[bytes]], stop: threading.Event
) -> bool:
    """Wait until /readyz answers 200 (models loaded, a worker up); False if stopped first."""
    while not stop.is_set() and all(child.poll() is None for child in children):
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        stop.wait(0.5)
    return False


if __name__ == "__main__":
    sys.exit(main())
