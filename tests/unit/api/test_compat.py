"""`GET /generate` (the Node server's route): its problems name the Node query parameters."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from api.problems import PROBLEM_JSON
from api.services import Services
from tests.unit.api.conftest import MAX_SEED_CHARS


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("outputLength=many", "outputLength"),
        ("outputLength=-3", "outputLength"),
        ("outputLength=0", "outputLength"),
        ("outputLength=1001", "outputLength"),
        ("temperature=warm", "temperature"),
        ("temperature=9", "temperature"),
        ("inputText=%C3%86", "inputText"),
        (f"inputText={'a' * (MAX_SEED_CHARS + 1)}", "inputText"),
        ("model=no-such-model", "model"),
    ],
    ids=[
        "length-not-a-number",
        "length-negative",
        "length-zero",
        "length-over-the-limit",
        "temperature-not-a-number",
        "temperature-too-high",
        "unknown-seed-character",
        "seed-too-long",
        "unknown-model",
    ],
)
def test_generate_errors_name_the_query_parameter(
    client: FlaskClient, services: Services, query: str, parameter: str
) -> None:
    response = client.get(f"/generate?{query}")
    assert response.status_code == 422 and response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert [error["field"] for error in body["errors"]] == [parameter]
    assert body["detail"].startswith(f"{parameter}: ")
    assert services.store.queue_depth() == 0


def test_generate_reports_every_bad_parameter_at_once(client: FlaskClient) -> None:
    body = client.get("/generate?outputLength=x&temperature=y").get_json()
    assert [error["field"] for error in body["errors"]] == ["outputLength", "temperature"]
