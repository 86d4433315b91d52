"""Fixtures of every test: a real redis-server, tiny models, ../shared, a webhook receiver.

`tests/unit` runs in-process (a real redis-server at most); `tests/integration` starts the
service's own processes (see its conftest).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from scripts.redis_server import RedisServer
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
BIN = Path(sys.executable).parent
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
