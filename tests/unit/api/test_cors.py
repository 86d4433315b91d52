"""CORS: exact origins or `*` without credentials, preflights for the headers the API reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from flask.testing import FlaskClient

from api.app import create_app
from api.services import EXTENSION, Services
from shared.settings import Settings

SKETCH = "http://127.0.0.1:5500"
MakeClient = Callable[..., FlaskClient]


def preflight(client: FlaskClient, origin: str, headers: str) -> dict[str, str]:
    """Send a browser's preflight for a POST /v1/jobs; return its CORS headers."""
    response = client.options(
        "/v1/jobs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
    )
    assert response.status_code == 200
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-")}


@pytest.fixture
def client_for(settings: Settings, redis_client: redis.Redis) -> Iterator[object]:
    """Yield a factory of test clients of apps with other CORS origins."""
    made: list[Services] = []

    def make(*origins: str) -> FlaskClient:
        app = create_app(
            settings.model_copy(update={"cors_origins": list(origins), "api_keys": ["k"]})
        )
        made.append(app.extensions[EXTENSION])
        return app.test_client()

    yield make
    for services in made:
        services.celery.close()
        services.store.client.close()


def test_a_listed_origin_is_allowed_with_the_headers_the_api_reads(client_for: MakeClient) -> None:
    client = client_for(SKETCH)
    allowed = preflight(client, SKETCH, "authorization, content-type, last-event-id")
    assert allowed["access-control-allow-origin"] == SKETCH
    granted = {h.strip().lower() for h in allowed["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "last-event-id"} <= granted
    assert "POST" in allowed["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in allowed
    answer = client.get("/v1/models", headers={"Origin": SKETCH, "Authorization": "Bearer k"})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == SKETCH
    assert "Retry-After" in answer.headers["Access-Control-Expose-Headers"]


def test_other_origins_get_no_cors_headers(client_for: MakeClient) -> None:
    client = client_for(SKETCH)
    assert preflight(client, "http://evil.test", "authorization") == {}
    answer = client.get("/v1/models", headers={"Origin": "http://evil.test"})
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_a_wildcard_allows_any_origin_without_credentials(client_for: MakeClient) -> None:
    client = client_for("*")
    allowed = preflight(client, "http://anywhere.test", "authorization")
    assert allowed["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in allowed


def test_without_origins_only_the_client_module_is_shared(client_for: MakeClient) -> None:
    client = client_for()
    assert preflight(client, SKETCH, "authorization") == {}
    with client.get("/lstmgen.js", headers={"Origin": SKETCH}) as module:
        assert module.status_code == 200
        assert module.headers["Content-Type"].startswith("text/javascript")
        assert module.headers["Access-Control-Allow-Origin"] == "*"


def test_bad_origins_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="CORS origins"):
        Settings(cors_origins=["127.0.0.1:5500"])
    with pytest.raises(ValueError, match="CORS origins"):
        Settings(cors_origins=["http://host/path"])
