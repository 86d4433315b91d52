"""Bad input, limits, API keys, back-pressure and a dead Redis: always problem+json, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis

from scripts.redis_server import free_port
from tests.integration.conftest import ApiHandle, StartApi
from tests.integration.service.helpers import check_problem, get_job, submit

KEYS = ("key-alice", "key-bob")


@pytest.fixture(scope="module")
def plain(start_api: StartApi) -> ApiHandle:
    """Start an API with no worker behind it (jobs stay queued) and small limits."""
    return start_api(max_queue_depth=3, max_length=1000, max_seed_chars=50, max_n=4,
                     max_body_bytes=6000)  # fmt: skip


@pytest.fixture
def api(plain: ApiHandle, redis_client: redis.Redis) -> httpx.Client:
    """Return a client of the plain API over a flushed job store."""
    return plain.client()


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"length": 0}, "length", "greater than or equal to 1"),
        ({"length": 1001}, "length", "1000"),
        ({"length": "10"}, "length", "integer"),
        ({"length": 10.5}, "length", "integer"),
        ({"length": True}, "length", "integer"),
        ({"seed": "a" * 51}, "seed", "50"),
        ({"seed": 12}, "seed", "string"),
        ({"temperature": -0.1}, "temperature", "0"),
        ({"temperature": 5.5}, "temperature", "5"),
        ({"temperature": "hot"}, "temperature", "number"),
        ({"top_k": 0}, "top_k", "1"),
        ({"top_p": 0}, "top_p", "0"),
        ({"top_p": 1.5}, "top_p", "1"),
        ({"n": 5}, "n", "4"),
        ({"stop": "x"}, "stop", "list"),
        ({"stop": [""]}, "stop[0]", "at least 1"),
        ({"stop": ["a"] * 9}, "stop", "8"),
        ({"random_seed": -1}, "random_seed", "0"),
        ({"random_seed": 2**64}, "random_seed", "18446744073709551615"),
        ({"unknown_chars": "ignore"}, "unknown_chars", "'drop'"),
        ({"model": "nope"}, "model", "available: tiny, tiny2, tiny3"),
        ({"model": ""}, "model", "at least 1"),
        ({"seed": "Hello"}, "seed", "'H'"),
        ({"seed": "€uro", "unknown_chars": "lowercase"}, "seed", "'€'"),
        ({"webhook": "ftp://example.com/hook"}, "webhook", "http"),
        ({"webhook": "http://"}, "webhook", "host"),
        ({"webhook_events_filter": ["finished"]}, "webhook_events_filter[0]", "'start'"),
        ({"metadata": {"k": "v" * 4100}}, "metadata", "4096 bytes"),
        ({"metadata": [1]}, "metadata", "dictionary"),
        ({"colour": "red"}, "colour", "not permitted"),
    ],
)
def test_each_invalid_field_is_a_422_naming_it(
    api: httpx.Client, body: dict[str, Any], field: str, words: str
) -> None:
    problem = check_problem(api.post("/v1/jobs", json={"model": "tiny", **body}), 422, field)
    message = next(e["message"] for e in problem["errors"] if e["field"] == field)
    assert words in message


def test_unknown_characters_are_listed_and_can_be_dropped_or_lowercased(api: httpx.Client) -> None:
    problem = check_problem(api.post("/v1/jobs", json={"model": "tiny", "seed": "Héllo€"}), 422)
    assert problem["unknown_characters"] == ["H", "é", "€"]
    dropped = submit(api, model="tiny", seed="Héllo€", unknown_chars="drop")
    lowered = submit(api, model="tiny", seed="HELLO", unknown_chars="lowercase")
    assert dropped["input"]["unknown_chars"] == "drop" and lowered["status"] == "queued"
    check_problem(api.post("/v1/jobs", json={"model": "tiny", "seed": "ÉÉ",
                                             "unknown_chars": "drop"}), 422, "seed")  # fmt: skip


@pytest.mark.parametrize(
    ("content", "headers", "status", "field"),
    [
        (b'{"model": "tiny",', {}, 400, "body"),
        (b'{"seed": "\xff\xfe"}', {}, 400, "body"),
        (b'{"length": NaN}', {}, 400, "body"),
        (b"[1, 2]", {}, 422, "body"),
        (b'"text"', {}, 422, "body"),
        (b"model=tiny", {"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
        (b'{"seed": "' + b"a" * 7000 + b'"}', {}, 413, "body"),
    ],
)
def test_broken_bodies_are_4xx_problems(
    api: httpx.Client, content: bytes, headers: dict[str, str], status: int, field: str | None
) -> None:
    headers = {"Content-Type": "application/json", **headers}
    check_problem(api.post("/v1/jobs", content=content, headers=headers), status, field)


def test_unknown_routes_and_methods_are_problems(api: httpx.Client) -> None:
    check_problem(api.get("/v2/nothing"), 404)
    response = check_problem_raw(api.delete("/v1/jobs"), 405)
    assert "POST" in response.headers["Allow"]


def check_problem_raw(response: httpx.Response, status: int) -> httpx.Response:
    """Assert a problem+json status and return the response."""
    check_problem(response, status)
    return response


def test_a_deep_queue_answers_429_with_retry_after(api: httpx.Client) -> None:
    for _ in range(3):
        submit(api, model="tiny2", length=5)
    response = api.post("/v1/jobs", json={"model": "tiny2", "length": 5})
    check_problem(response, 429)
    assert int(response.headers["Retry-After"]) > 0
    jobs = api.get("/v1/jobs").json()["jobs"]
    assert api.post(f"/v1/jobs/{jobs[0]['id']}/cancel").json()["status"] == "canceled"
    assert submit(api, model="tiny2", length=5)["status"] == "queued"  # room again


def test_readiness_needs_a_worker(plain: ApiHandle, redis_client: redis.Redis) -> None:
    for key in redis_client.scan_iter(match="lstmgen:worker:*"):
        redis_client.delete(key)  # heartbeats of workers other test modules may have left
    check_problem(httpx.get(f"{plain.url}/readyz"), 503)


def test_redis_down_is_503_not_500(start_api: StartApi) -> None:
    dead = start_api(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = dead.client()
    response = client.post("/v1/jobs", json={"model": "tiny", "length": 5})
    problem = check_problem(response, 503)
    assert "Redis" in problem["detail"] and response.headers["Retry-After"]
    check_problem(client.get("/v1/jobs/abc"), 503)
    check_problem(client.get("/v1/jobs"), 503)
    check_problem(client.get("/readyz"), 503)
    assert client.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def keyed(start_api: StartApi) -> ApiHandle:
    """Start an API that requires API keys."""
    return start_api(api_keys=",".join(KEYS))


def test_api_keys_isolate_jobs(keyed: ApiHandle, redis_client: redis.Redis) -> None:
    alice, bob = keyed.client(KEYS[0]), keyed.client(KEYS[1])
    check_problem(keyed.client().get("/v1/jobs"), 401)
    check_problem(keyed.client("wrong").post("/v1/jobs", json={}), 401)
    assert keyed.client().get("/healthz").status_code == 200
    job = submit(alice, model="tiny2", length=5)
    assert get_job(alice, job["id"])["id"] == job["id"]
    check_problem(bob.get(f"/v1/jobs/{job['id']}"), 404)
    check_problem(bob.post(f"/v1/jobs/{job['id']}/cancel"), 404)
    check_problem(bob.get(f"/v1/jobs/{job['id']}/stream"), 404)
    assert bob.get("/v1/jobs").json()["jobs"] == []
    assert [j["id"] for j in alice.get("/v1/jobs").json()["jobs"]] == [job["id"]]
    # A client id taken by another key is a conflict, never a view of the other's job.
    check_problem(bob.put(f"/v1/jobs/{job['id']}", json={"model": "tiny2"}), 409, "id")
    spec = httpx.get(f"{keyed.url}/openapi.json").json()
    assert spec["security"] == [{"bearer": []}]
