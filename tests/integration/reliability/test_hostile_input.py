"""Hostile input: schemathesis against /openapi.json of the real API, and hand-made abuse.

Schemathesis (its CLI, in a subprocess) sends schema-derived valid and invalid requests to every
operation: none may get a 5xx, and every answer must match the document. The hand-made cases
are what a schema cannot describe (bytes that are not UTF-8, bodies past the size limit, lying
headers): each must get a 4xx problem+json.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import BIN
from tests.integration.conftest import ApiHandle, StartApi, StartWorker
from tests.integration.service.helpers import check_problem, submit

MAX_BODY = 4096
MAX_LENGTH = 2_000
MAX_SEED = 1_000
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
EXAMPLES = 15  # per operation and phase: CI time stays in minutes


@pytest.fixture(scope="module")
def stack(start_api: StartApi, start_worker: StartWorker) -> ApiHandle:
    """Start a worker and an API with small limits, so that generated jobs end in seconds."""
    limits: dict[str, Any] = {
        "max_length": MAX_LENGTH,
        "max_seed_chars": MAX_SEED,
        "max_n": 4,
        "default_model": "tiny",
    }
    start_worker(worker_slots=4, **limits)  # serves every model the API offers
    return start_api(max_body_bytes=MAX_BODY, max_wait_s=10.0, **limits)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    stack: ApiHandle, redis_client: redis.Redis, tmp_path: Path
) -> None:
    command = [
        str(BIN / "schemathesis"), "run", f"{stack.url}/openapi.json",
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(EXAMPLES),
        "--seed", "20240601",
        "--workers", "1",  # threads: CPython 3.11 < 3.11.8 cannot parse ASTs in parallel
        "--request-timeout", "30",
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--no-color",
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    output = run.stdout + run.stderr
    print(output[output.find("Test cases:") :])  # how many cases ran, shown with -s
    failures = output[output.find("FAILURES") :]
    assert run.returncode == 0, f"{failures[-8000:]}\nAPI log:\n{stack.log()[-4000:]}"
    assert " passed" in output and "Coverage" in output, output[-4000:]


def raw_post(api: httpx.Client, path: str, content: bytes | Iterator[bytes], **headers: str) -> Any:
    """POST raw bytes with a JSON content type (plus `headers`)."""
    return api.post(path, content=content, headers={"content-type": "application/json", **headers})


def chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    """Yield a JSON-looking body of `total` bytes in chunks (sent without Content-Length)."""
    yield b'{"seed": "'
    for _ in range(total // size):
        yield b"a" * size
    yield b'"}'


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/models/tiny/predict"])
def test_bodies_past_the_limit_get_413(api: httpx.Client, path: str) -> None:
    big = json.dumps({"seed": "a" * (2 * MAX_BODY)}).encode()
    check_problem(raw_post(api, path, big), 413, "body")
    check_problem(raw_post(api, path, chunks(4 * MAX_BODY)), 413, "body")


def test_a_lying_content_length_gets_413_without_reading(stack: ApiHandle) -> None:
    # A raw socket: httpx refuses to send a Content-Length that does not match the body.
    request = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000000\r\nConnection: close\r\n\r\n{}"
    )
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"413", reply[:500]
    assert b"application/problem+json" in head.lower()
    assert json.loads(body)["status"] == 413


@pytest.mark.parametrize(
    "content",
    [
        b'{"seed": "\xff\xfe"}',  # not UTF-8
        b'{"seed": "\xed\xa0\x80"}',  # an encoded surrogate
        b"\xc3",  # a truncated sequence
    ],
)
def test_invalid_utf8_gets_400(api: httpx.Client, content: bytes) -> None:
    body = check_problem(raw_post(api, "/v1/jobs", content), 400, "body")
    assert "UTF-8" in body["detail"]


@pytest.mark.parametrize(
    "content",
    [
        b'{"length": NaN}',
        b'{"temperature": Infinity}',
        b'{"seed": "a"',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 3000 + b"1" + b"}" * 3000,
    ],
)
def test_malformed_json_gets_400(api: httpx.Client, content: bytes) -> None:
    check_problem(raw_post(api, "/v1/jobs", content[:MAX_BODY]), 400, "body")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"length": 10**30}, "length"),
        ({"length": MAX_LENGTH + 1}, "length"),
        ({"length": -1}, "length"),
        ({"n": 10**9}, "n"),
        ({"random_seed": 2**80}, "random_seed"),
        ({"temperature": 1e308}, "temperature"),
        ({"top_k": 10**20}, "top_k"),
        ({"seed": "a" * (MAX_SEED + 1)}, "seed"),
        ({"stop": ["x"] * 1000}, "stop"),
    ],
)
def test_huge_values_get_422_naming_the_field(
    api: httpx.Client, payload: dict[str, Any], field: str
) -> None:
    check_problem(api.post("/v1/jobs", json={"model": "tiny", **payload}), 422, field)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"length": "100"}, "length"),
        ({"length": 1.5}, "length"),
        ({"length": True}, "length"),
        ({"temperature": "hot"}, "temperature"),
        ({"n": None}, "n"),
        ({"seed": 42}, "seed"),
        ({"seed": ["a"]}, "seed"),
        ({"stop": "\n"}, "stop"),
        ({"stop": [1]}, "stop[0]"),
        ({"model": {"name": "tiny"}}, "model"),
        ({"metadata": [1, 2]}, "metadata"),
        ({"webhook": 7}, "webhook"),
        ({"webhook_events_filter": "completed"}, "webhook_events_filter"),
        ({"unknown_chars": "ignore"}, "unknown_chars"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_wrong_types_get_422_naming_the_field(
    api: httpx.Client, payload: dict[str, Any], field: str
) -> None:
    check_problem(api.post("/v1/jobs", json={"model": "tiny", **payload}), 422, field)


@pytest.mark.parametrize("content", [b"[]", b'"text"', b"42", b"null", b"true"])
def test_a_body_that_is_not_an_object_gets_422(api: httpx.Client, content: bytes) -> None:
    check_problem(raw_post(api, "/v1/jobs", content), 422, "body")


def test_other_hostile_requests_get_4xx_problems(api: httpx.Client) -> None:
    text = {"content-type": "text/plain"}
    check_problem(api.post("/v1/jobs", content=b"length=5", headers=text), 415)
    check_problem(api.post("/v1/jobs", json={}, headers={"Idempotency-Key": "k" * 300}), 422)
    check_problem(api.get("/v1/jobs", params={"limit": "1e9"}), 422, "limit")
    check_problem(api.get("/v1/jobs", params={"cursor": "\x00" * 50}), 422, "cursor")
    check_problem(api.get("/v1/jobs", params={"status": "x" * 5000}), 422, "status")
    check_problem(api.get("/generate", params={"outputLength": "9" * 40}), 422)
    check_problem(api.get("/generate", params={"temperature": "nan"}), 422)
    check_problem(api.get("/v1/jobs/" + "a" * 5000), 404)
    check_problem(api.get("/v1/jobs/%FF%FE"), 404)
    check_problem(api.delete("/v1/jobs"), 405)
    job = submit(api, model="tiny", length=5)
    stream = api.get(f"/v1/jobs/{job['id']}/stream", headers={"Last-Event-ID": "'; DROP"})
    check_problem(stream, 422, "Last-Event-ID")
    check_problem(api.post("/v1/models/tiny/predict", json={"seed": "a" * 20_000}), 413)
    check_problem(api.post("/v1/models/tiny/predict", json={"temperature": "x"}), 422)
