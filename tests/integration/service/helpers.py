"""Helpers for service tests: job polling, SSE parsing, schema checks against /openapi.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema

from tests.conftest import wait_for

FINAL = {"succeeded", "failed", "canceled", "timed_out", "expired"}


def submit(api: httpx.Client, **body: Any) -> dict[str, Any]:
    """Create a job and return it (asserting 201)."""
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def get_job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    """Return a job (asserting 200)."""
    response = api.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_status(
    api: httpx.Client, job_id: str, statuses: set[str] = FINAL, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll a job until its status is one of `statuses`; return it."""

    def reached() -> dict[str, Any] | None:
        job = get_job(api, job_id)
        return job if job["status"] in statuses else None

    found: dict[str, Any] = wait_for(reached, timeout, f"job {job_id} to reach {statuses}")
    return found


def wait_progress(api: httpx.Client, job_id: str, done: int = 1, timeout: float = 30.0) -> None:
    """Wait until a job has generated at least `done` characters."""
    wait_for(
        lambda: get_job(api, job_id)["progress"]["done"] >= done,
        timeout,
        f"job {job_id} to generate {done} characters",
    )


@dataclass(frozen=True)
class SSE:
    """One Server-Sent Event."""

    id: str | None
    event: str
    data: dict[str, Any]


def sse_events(response: httpx.Response) -> Iterator[SSE]:
    """Parse Server-Sent Events from a streaming response."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                yield SSE(
                    fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def check_schema(spec: dict[str, Any], name: str, instance: Any) -> None:
    """Assert that `instance` matches the component schema `name` of the OpenAPI document."""
    schema = {**spec, "$ref": f"#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema).validate(instance)


def check_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    """Assert a problem+json response with this status (naming `field`); return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    if field is not None:
        assert field in [error["field"] for error in body.get("errors", [])], body
    return body
