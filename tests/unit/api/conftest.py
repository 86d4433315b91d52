"""The API app in-process over the session's Redis and the tiny models, without any worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.services import EXTENSION, Services
from scripts.redis_server import RedisServer
from shared.settings import Settings

BASE_URL = "http://api.test"
MAX_SEED_CHARS = 50


@pytest.fixture
def settings(redis_server: RedisServer, model_dir: Path) -> Settings:
    """Return the API's settings, every field that matters given (LSTMGEN_* may be set)."""
    return Settings(
        redis_url=redis_server.url,
        model_dir=model_dir,
        default_model="tiny",
        public_url=BASE_URL,
        host="127.0.0.1",
        environment="development",
        api_keys=[],
        cors_origins=[],
        model_aliases=[],
        compat_model="",
        webhook_secrets=[],
        webhook_allow_private=False,
        max_seed_chars=MAX_SEED_CHARS,
        max_length=1000,
        max_n=4,
        max_queue_depth=100,
        key_max_queued=1000,
        key_max_running_samples=0,
        key_submit_rate=20.0,
        key_submit_burst=100,
        key_limits={},
    )


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Iterator[Flask]:
    """Return the app over a flushed store; its connections are closed at teardown."""
    app = create_app(settings)
    yield app
    found = app.extensions[EXTENSION]
    assert isinstance(found, Services)
    found.celery.close()
    found.store.client.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Return a test client of the app."""
    return app.test_client()


@pytest.fixture
def services(app: Flask) -> Services:
    """Return the app's services (its job store, settings, ...)."""
    found = app.extensions[EXTENSION]
    assert isinstance(found, Services)
    return found
