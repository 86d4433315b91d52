"""`POST /v1/trainings` in-process: the JSON body and the multipart form, checked alike."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from api.services import Services
from api.training_form import parse_layers
from shared.jobs.records import JobStatus
from shared.settings import Settings

MAX_CHARS = 200
CORPUS = "the quick brown fox jumps over the lazy dog. " * 4


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Return the API's settings with a short corpus limit."""
    return settings.model_copy(update={"max_training_chars": MAX_CHARS})


def post_form(client: FlaskClient, data: dict[str, Any], corpus: bytes | None) -> Any:
    """POST a training form, with `corpus` as the file part when given."""
    if corpus is not None:
        data = {**data, "file": (io.BytesIO(corpus), "corpus.txt")}
    return client.post("/v1/trainings", data=data, content_type="multipart/form-data")


def fields(answer: Any) -> list[str]:
    """Return the fields a problem+json answer names."""
    assert answer.content_type.startswith("application/problem+json"), answer.get_data()
    return [error["field"] for error in answer.get_json()["errors"]]


def test_a_form_becomes_the_training_the_json_body_would(
    client: FlaskClient, services: Services
) -> None:
    form = {"name": "fox", "layers": "32,16", "epochs": "2", "learning_rate": "0.01"}
    answer = post_form(client, form, CORPUS.encode())
    assert answer.status_code == 201, answer.get_json()
    training = answer.get_json()
    assert training["params"]["layers"] == [32, 16] and training["params"]["epochs"] == 2
    assert training["params"]["learning_rate"] == 0.01
    assert training["params"]["chars"] == len(CORPUS)
    assert services.trainings.corpus(training["id"]) == CORPUS

    same = client.post("/v1/trainings", json={"name": "fox2", "text": CORPUS, "layers": [32, 16],
                                              "epochs": 2, "learning_rate": 0.01})  # fmt: skip
    assert same.status_code == 201
    assert same.get_json()["params"] == training["params"]


def test_a_form_takes_layers_as_a_json_list_and_a_base_model(client: FlaskClient) -> None:
    answer = post_form(client, {"name": "more", "layers": "[8]", "base_model": "tiny"}, b"abcabc")
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["params"]["base_model"] == "tiny"


def test_a_file_that_is_not_utf8_is_422_naming_file(client: FlaskClient) -> None:
    answer = post_form(client, {"name": "latin"}, "caf\u00e9 na\u00efve".encode("latin-1"))
    assert answer.status_code == 422 and fields(answer) == ["file"]
    assert "UTF-8" in answer.get_json()["detail"]


def test_a_file_over_the_corpus_limit_is_413_naming_file(client: FlaskClient) -> None:
    answer = post_form(client, {"name": "long"}, b"a" * (MAX_CHARS + 1))
    assert answer.status_code == 413 and fields(answer) == ["file"]
    at_limit = post_form(client, {"name": "long"}, "\u00e9".encode() * MAX_CHARS)
    assert at_limit.status_code == 201, at_limit.get_json()  # characters count, not bytes


@pytest.mark.parametrize(
    ("form", "corpus", "field"),
    [
        ({"name": "x"}, None, "file"),
        ({"name": "x"}, b"", "file"),
        ({"name": "x", "text": "abc"}, b"abc", "text"),
        ({}, b"abc", "name"),
        ({"name": "x", "epochs": "many"}, b"abc", "epochs"),
        ({"name": "x", "layers": "32,big"}, b"abc", "layers"),
        ({"name": "x", "layers": "[2000]"}, b"abc", "layers"),
        ({"name": "x", "validation_split": "nan"}, b"abc", "validation_split"),
        ({"name": "x", "base_model": "nope"}, b"abc", "base_model"),
        ({"name": "x", "webhook": "ftp://example.com/"}, b"abc", "webhook"),
        ({"name": "x", "colour": "red"}, b"abc", "colour"),
    ],
)
def test_a_bad_form_is_a_problem_naming_the_field(
    client: FlaskClient, form: dict[str, str], corpus: bytes | None, field: str
) -> None:
    answer = post_form(client, form, corpus)
    assert answer.status_code == 422, answer.get_json()
    assert field in fields(answer)


def test_layers_parse_from_either_spelling_or_stay_text() -> None:
    assert parse_layers("128,128") == parse_layers("[128, 128]") == [128, 128]
    assert parse_layers("128, x") == "128, x"
    assert parse_layers("[1,") == "[1,"


def test_a_body_neither_json_nor_a_form_is_415_saying_both(client: FlaskClient) -> None:
    answer = client.post("/v1/trainings", data="name=x", content_type="text/plain")
    assert answer.status_code == 415
    assert "multipart/form-data" in answer.get_json()["detail"]


def read_stream(client: FlaskClient, path: str, **headers: str) -> list[tuple[str, str, Any]]:
    """Return the (id, event, data) of a finished training's SSE stream."""
    answer = client.get(path, headers=headers)
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    messages = answer.get_data(as_text=True).split("\n\n")
    assert messages[0] == "retry: 1000"
    found = []
    for message in messages[1:]:
        if message:
            lines = dict(line.split(": ", 1) for line in message.splitlines())
            found.append((lines["id"], lines["event"], json.loads(lines["data"])))
    return found


def test_the_events_of_a_training_stream_until_done_and_resume(
    client: FlaskClient, services: Services
) -> None:
    created = client.post("/v1/trainings", json={"name": "fox", "text": CORPUS}).get_json()
    path = f"/v1/trainings/{created['id']}/events"
    services.trainings.claim(created["id"], "w1")
    services.trainings.finish(created["id"], JobStatus.SUCCEEDED, worker="w1")
    events = read_stream(client, path)
    assert [(event, data["status"]) for _, event, data in events] == [
        ("status", "queued"), ("status", "running"), ("status", "succeeded"), ("done", "succeeded"),
    ]  # fmt: skip
    assert read_stream(client, path, **{"Last-Event-ID": events[1][0]}) == events[2:]
    assert read_stream(client, path, **{"Last-Event-ID": events[-1][0]}) == []  # after done
    assert read_stream(client, f"{path}?after={events[2][0]}") == events[3:]
    bad = client.get(f"{path}?after=yesterday")
    assert bad.status_code == 422 and fields(bad) == ["after"]
    assert client.get("/v1/trainings/0123456789abcdef0123456789abcdef/events").status_code == 404
