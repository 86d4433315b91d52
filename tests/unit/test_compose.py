"""docker-compose.yml stays valid and in step with what runs here (Docker cannot run in CI)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.redis_connection import parse_sentinel_url
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_and_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "api", "worker", "webhooks", "flower"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    for name in ("redis", "api", "worker", "webhooks"):
        assert "healthcheck" in services[name], name
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["worker"]["condition"] == "service_healthy"
    # `--scale worker=N` needs a worker without a fixed name or host port.
    assert "container_name" not in services["worker"]
    assert "ports" not in services["worker"]


def test_commands_name_real_entry_points(compose: dict[str, Any]) -> None:
    for name in ("api", "worker", "webhooks", "flower"):
        command = compose["services"][name]["command"]
        module = command[command.index("-A") + 1] if "-A" in command else None
        if module:
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
    api = compose["services"]["api"]["command"]
    assert (ROOT / api[api.index("-c") + 1]).exists()
    wsgi_module, attribute = api[-1].split(":")
    assert attribute in (ROOT / (wsgi_module.replace(".", "/") + ".py")).read_text()
    assert importlib.util.find_spec("gunicorn") is not None


def resolve(value: object) -> str:
    """Resolve `${VAR:-default}` and `${VAR:?message}` as compose would with a filled .env."""
    match = re.fullmatch(r"\$\{(\w+):([-?])(.*)\}", str(value))
    if match is None:
        return str(value)
    name, kind, default = match.groups()
    return SAMPLE_ENV.get(name, default if kind == "-" else "")


SAMPLE_ENV = {"LSTMGEN_API_KEYS": "key-1", "LSTMGEN_WEBHOOK_SECRET": "whsec_c2VjcmV0"}


def test_environment_is_valid_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {f"LSTMGEN_{name.upper()}" for name in Settings.model_fields}
    fields.add("LSTMGEN_WEBHOOK_SECRET")
    for name in ("api", "worker", "webhooks"):
        environment = compose["services"][name]["environment"]
        assert set(environment) <= fields, name
        for key, value in environment.items():
            monkeypatch.setenv(key, resolve(value))
        settings = Settings()
        assert settings.redis_url == "redis://redis:6379/0"
    assert Settings().host == "0.0.0.0"


def test_sentinel_profile_matches_its_env_file(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    profiled = {
        name for name, service in services.items() if "sentinel" in service.get("profiles", [])
    }
    assert profiled == {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
    assert "--replicaof" in services["redis-replica"]["command"]
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "sentinel.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    hosts = {host for host, _ in parse_sentinel_url(settings.redis_url).sentinels}
    assert hosts == {"sentinel-1", "sentinel-2", "sentinel-3"}
    script = services["sentinel-1"]["command"][-1]
    assert f"sentinel monitor {settings.redis_sentinel_master} redis 6379 2" in script
    assert settings.redis_min_replicas == 1
    # The services pass these variables through from the env file.
    environment = services["api"]["environment"]
    assert {
        "LSTMGEN_REDIS_URL",
        "LSTMGEN_REDIS_SENTINEL_MASTER",
        "LSTMGEN_REDIS_MIN_REPLICAS",
    } <= set(environment)
