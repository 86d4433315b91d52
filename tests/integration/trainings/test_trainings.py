"""Trainings end to end: real API, real training and generation workers, real Redis.

A one-epoch training of a tiny network on a few KB of text is submitted over HTTP, reports
progress and metrics, registers its model, and a generation job runs on that model at once.
A canceled training ends `canceled` and leaves no model; another key never sees a training.
A corpus sent as a file trains the same way, and its events stream as Server-Sent Events; a
training with `base_model` continues that model's weights.
"""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from scripts.redis_server import RedisServer
from shared.catalog.catalog import ModelCatalog
from tests.conftest import BIN, wait_for
from tests.integration.conftest import (
    ApiHandle,
    ServiceProcess,
    StartApi,
    StartTrainingWorker,
    StartWebhookWorker,
    StartWorker,
    WorkerHandle,
)
from tests.webhook_receiver import SECRET_A, Receiver

KEYS = "alice:key-alice,bob:key-bob"
CORPUS = "the quick brown fox jumps over the lazy dog. " * 80  # 3.6 KB, 28 characters
TINY = {"layers": [32], "epochs": 1, "seq_len": 16, "batch_size": 32, "validation_split": 0.1}
TRAIN_TIMEOUT_S = 240.0  # TensorFlow's first import and one epoch on a shared 2-core machine
MAX_CHARS = 20_000  # the API's corpus limit here


@pytest.fixture(scope="module")
def worker(start_worker: StartWorker) -> WorkerHandle:
    """Start a generation worker for `tiny` and every uploaded (or trained) model."""
    return start_worker(worker_models="tiny", worker_slots=4)


@pytest.fixture(scope="module")
def trainer(start_training_worker: StartTrainingWorker) -> ServiceProcess:
    """Start the training worker."""
    return start_training_worker(training_progress_interval_s=0.05)


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    """Start one webhook receiver for the module."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def webhook_worker(start_webhook_worker: StartWebhookWorker) -> ServiceProcess:
    """Start the webhook worker, signing with one secret."""
    return start_webhook_worker(webhook_allow_private=True, webhook_secrets=[SECRET_A])


@pytest.fixture(scope="module")
def stack(
    start_api: StartApi,
    worker: WorkerHandle,
    trainer: ServiceProcess,
    webhook_worker: ServiceProcess,
) -> ApiHandle:
    """Start the API with two keys, after the workers."""
    return start_api(
        api_keys=KEYS,
        default_model="tiny",
        webhook_allow_private=True,
        max_training_chars=MAX_CHARS,
    )


@pytest.fixture
def alice(stack: ApiHandle, redis_client: redis.Redis) -> httpx.Client:
    """Return key alice's client over a flushed store."""
    return stack.client("key-alice", timeout=60.0)


def wait_training(client: httpx.Client, training_id: str, timeout: float) -> dict[str, Any]:
    """Wait until a training is final; return it."""

    def final() -> dict[str, Any] | None:
        found: dict[str, Any] = client.get(f"/v1/trainings/{training_id}").json()
        return found if found["status"] not in ("queued", "running") else None

    result: dict[str, Any] = wait_for(final, timeout, f"training {training_id} to end")
    return result


def test_one_epoch_training_registers_a_servable_model(
    alice: httpx.Client, stack: ApiHandle
) -> None:
    created = alice.post("/v1/trainings", json={"name": "fox", "text": CORPUS, **TINY})
    assert created.status_code == 201, created.text
    training = created.json()
    assert created.headers["Location"].endswith(f"/v1/trainings/{training['id']}")
    assert training["status"] in ("queued", "running")
    assert stack.client("key-bob").get(f"/v1/trainings/{training['id']}").status_code == 404

    ended = wait_training(alice, training["id"], TRAIN_TIMEOUT_S)
    assert ended["status"] == "succeeded", ended
    assert ended["progress"]["epoch"] == ended["progress"]["epochs"] == 1
    assert ended["progress"]["step"] == ended["progress"]["steps"] > 0
    [epoch] = ended["metrics"]
    assert epoch["epoch"] == 1 and 0 < epoch["loss_bpc"] < 8 and epoch["val_loss_bpc"] > 0

    job = alice.post(
        "/v1/jobs",
        json={"model": "fox", "seed": "the ", "length": 40, "temperature": 0},
        headers={"Prefer": "wait=60"},
    )
    assert job.status_code == 201, job.text
    assert job.json()["status"] == "succeeded", job.json()
    assert len(job.json()["output"]) == 40

    taken = alice.post("/v1/trainings", json={"name": "fox", "text": CORPUS, **TINY})
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["field"] == "name"


def test_a_canceled_training_leaves_no_model(alice: httpx.Client) -> None:
    body = {
        **TINY,
        "name": "canceled",
        "text": CORPUS,
        "epochs": 100,
        "seq_len": 8,
        "batch_size": 1,
    }
    answer = alice.post("/v1/trainings", json=body)
    assert answer.status_code == 201, answer.text
    training = answer.json()

    def running() -> bool:
        found = alice.get(f"/v1/trainings/{training['id']}").json()
        return found["status"] == "running" and found["progress"]["step"] > 0

    wait_for(running, TRAIN_TIMEOUT_S, "the training to report steps")
    assert alice.post(f"/v1/trainings/{training['id']}/cancel").status_code == 202
    ended = wait_training(alice, training["id"], 60.0)
    assert ended["status"] == "canceled", ended
    assert alice.get("/v1/models/canceled").status_code == 404
    assert alice.post("/v1/jobs", json={"model": "canceled", "seed": "a"}).status_code == 422


def test_the_cli_creates_and_follows_a_training_then_shows_it(
    stack: ApiHandle, redis_client: redis.Redis, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    server = ["--url", stack.url, "--api-key", "key-alice"]
    create = [
        str(BIN / "lstmgen"), "trainings", "create", "cli-fox", "--file", str(corpus), *server,
        "--layers", "32", "--epochs", "1", "--seq-len", "16", "--batch-size", "32",
        "--follow", "--json",
    ]  # fmt: skip
    run = subprocess.run(create, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S)
    assert run.returncode == 0, run.stderr
    training = json.loads(run.stdout)
    assert training["status"] == "succeeded" and len(training["metrics"]) == 1
    assert "epoch 1/1" in run.stderr  # the bar

    status = [str(BIN / "lstmgen"), "trainings", "status", training["id"], *server]
    shown = subprocess.run(status, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout and "epoch 1: loss" in shown.stdout

    cancel = [str(BIN / "lstmgen"), "trainings", "cancel", "nope", *server]
    missing = subprocess.run(cancel, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "404" in missing.stderr


def test_a_waited_training_sends_signed_start_and_completed_webhooks(
    alice: httpx.Client, hooks: Receiver
) -> None:
    body = {**TINY, "name": "hooked", "text": CORPUS, "webhook": hooks.url("/training")}
    waited = alice.post("/v1/trainings", json=body, headers={"Prefer": "wait=50"})
    assert waited.status_code == 201 and waited.headers["Preference-Applied"] == "wait=50"
    training = waited.json()
    assert training["status"] == "succeeded"  # the create waited for the end
    start, completed = hooks.wait_for(2, "/training", timeout=TRAIN_TIMEOUT_S)
    first: Any = start.verify(SECRET_A)
    last: Any = completed.verify(SECRET_A)
    assert (first["event"], first["kind"], first["id"]) == ("start", "training", training["id"])
    assert first["status"] == "running"
    assert (last["event"], last["status"]) == ("completed", "succeeded")
    assert last["metrics"] == wait_training(alice, training["id"], 10.0)["metrics"]


def test_invalid_trainings_name_the_field(alice: httpx.Client) -> None:
    for body, field in (
        ({**TINY, "text": CORPUS}, "name"),
        ({**TINY, "name": "x", "text": CORPUS, "epochs": 0}, "epochs"),
        ({**TINY, "name": "x", "text": CORPUS, "base_model": "nope"}, "base_model"),
        ({**TINY, "name": "x", "text": CORPUS, "webhook": "ftp://example.com/"}, "webhook"),
    ):
        answer = alice.post("/v1/trainings", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert field in [e["field"] for e in answer.json()["errors"]]


Event = tuple[str, str, dict[str, Any]]  # (id, event, data)


def read_events(client: httpx.Client, path: str, **headers: str) -> list[Event]:
    """Read a training's SSE stream to its end; return its events."""
    with client.stream("GET", path, headers=headers, timeout=60.0) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events: list[Event] = []
    for message in text.split("\n\n"):
        lines = [line for line in message.splitlines() if line and not line.startswith(":")]
        fields = dict(line.split(": ", 1) for line in lines)
        if "event" in fields:
            events.append((fields["id"], fields["event"], json.loads(fields["data"])))
    return events


def post_corpus(client: httpx.Client, corpus: bytes, **fields: Any) -> httpx.Response:
    """POST a training as a multipart form with `corpus` as its file."""
    form = {key: str(value) for key, value in fields.items()}
    files = {"file": ("corpus.txt", corpus, "text/plain")}
    return client.post("/v1/trainings", data=form, files=files)


def test_a_corpus_file_trains_a_model_streaming_its_events_then_jobs_and_predict_run_on_it(
    alice: httpx.Client, stack: ApiHandle
) -> None:
    form = {"name": "filed", "layers": "32", "epochs": 1, "seq_len": 16, "batch_size": 32}
    created = post_corpus(alice, CORPUS.encode(), **form)
    assert created.status_code == 201, created.text
    training = created.json()
    assert training["params"]["layers"] == [32] and training["params"]["chars"] == len(CORPUS)
    path = f"/v1/trainings/{training['id']}/events"
    with ThreadPoolExecutor(1) as pool:  # follows the training live, from its creation
        live = pool.submit(read_events, stack.client("key-alice"), path)
        ended = wait_training(alice, training["id"], TRAIN_TIMEOUT_S)
        events = live.result(timeout=60.0)
    assert ended["status"] == "succeeded", ended

    names = [event for _, event, _ in events]
    assert names[:2] == ["status", "status"] and names[-2:] == ["status", "done"]
    statuses = [data["status"] for _, event, data in events if event == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    progress = [data for _, event, data in events if event == "progress"]
    assert progress and progress[-1] == ended["progress"]
    steps = [(p["epoch"], p["step"]) for p in progress]
    assert steps == sorted(steps)
    assert [data for _, event, data in events if event == "metrics"] == ended["metrics"]
    assert names.index("metrics") < len(names) - 2  # before the end
    ids = [event_id for event_id, _, _ in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

    assert read_events(alice, path) == events  # a late reader gets them all
    middle = len(events) // 2
    assert read_events(alice, path, **{"Last-Event-ID": ids[middle]}) == events[middle + 1 :]
    assert read_events(alice, f"{path}?after={ids[-3]}") == events[-2:]
    assert stack.client("key-bob").get(path).status_code == 404

    job = alice.post(
        "/v1/jobs",
        json={"model": "filed", "seed": "the ", "length": 40, "temperature": 0},
        headers={"Prefer": "wait=60"},
    )
    assert job.status_code == 201 and job.json()["status"] == "succeeded", job.text
    assert len(job.json()["output"]) == 40
    predicted = alice.post("/v1/models/filed/predict", json={"seed": "the qu", "temperature": 0.5})
    assert predicted.status_code == 200, predicted.text
    probabilities = predicted.json()["probabilities"]
    vocab = alice.get("/v1/models/filed").json()["vocab"]
    assert sorted(p["char"] for p in probabilities) == sorted(vocab)
    assert abs(sum(p["probability"] for p in probabilities) - 1) < 1e-4


def test_a_corpus_file_not_utf8_or_too_long_is_refused_naming_file(alice: httpx.Client) -> None:
    latin = post_corpus(alice, "caf\u00e9 cr\u00e8me ".encode("latin-1") * 10, name="latin")
    assert latin.status_code == 422, latin.text
    assert latin.headers["Content-Type"].startswith("application/problem+json")
    assert [e["field"] for e in latin.json()["errors"]] == ["file"]

    long = post_corpus(alice, b"a" * (MAX_CHARS + 1), name="long")
    assert long.status_code == 413, long.text
    assert long.headers["Content-Type"].startswith("application/problem+json")
    assert [e["field"] for e in long.json()["errors"]] == ["file"]
    as_json = alice.post("/v1/trainings", json={"name": "long", "text": "a" * (MAX_CHARS + 1)})
    assert as_json.status_code == 422 and as_json.json()["errors"][0]["field"] == "text"
    assert alice.get("/v1/models/latin").status_code == 404
    assert alice.get("/v1/models/long").status_code == 404


def training_record(redis_server: RedisServer, name: str) -> dict[str, Any]:
    """Return the training.json inside a registered model's archive."""
    catalog = ModelCatalog.from_url(redis_server.url)
    info = catalog.get(name)
    assert info is not None
    archive = io.BytesIO()
    assert catalog.read_blob(info.digest, archive)
    with zipfile.ZipFile(archive) as unzipped:
        [member] = [n for n in unzipped.namelist() if n.endswith("training.json")]
        record: dict[str, Any] = json.loads(unzipped.read(member))
    return record


def test_a_training_with_base_model_continues_that_model(
    alice: httpx.Client, redis_server: RedisServer
) -> None:
    settings = {**TINY, "batch_size": 8, "text": CORPUS}  # some 40 steps an epoch
    base = alice.post("/v1/trainings", json={**settings, "name": "fox-base"})
    assert base.status_code == 201, base.text
    first = wait_training(alice, base.json()["id"], TRAIN_TIMEOUT_S)
    assert first["status"] == "succeeded", first

    more = alice.post(
        "/v1/trainings", json={**settings, "name": "fox-more", "base_model": "fox-base"}
    )
    assert more.status_code == 201, more.text
    second = wait_training(alice, more.json()["id"], TRAIN_TIMEOUT_S)
    assert second["status"] == "succeeded", second

    was, now = alice.get("/v1/models/fox-base").json(), alice.get("/v1/models/fox-more").json()
    assert now["vocab"] == was["vocab"] and now["layer_sizes"] == was["layer_sizes"]
    assert now["digest"] != was["digest"]
    record = training_record(redis_server, "fox-more")
    assert record["resumed_from"]["epochs_trained"] == 1
    assert record["epochs_trained"] == 2
    assert record["history"][0] == first["metrics"][0]  # the base's epoch, carried over
    assert record["history"][1] == {**second["metrics"][0], "epoch": 2}
    # The same batches in the same order (the run's seed), from trained weights rather than
    # random ones: the continued epoch's loss is lower than the fresh one's.
    assert second["metrics"][0]["loss_bpc"] < first["metrics"][0]["loss_bpc"]


def test_schemathesis_finds_no_server_error_on_the_training_operations(
    stack: ApiHandle, redis_client: redis.Redis, tmp_path: Path
) -> None:
    command = [
        str(BIN / "schemathesis"), "run", f"{stack.url}/openapi.json",
        "--header", "Authorization: Bearer key-bob",
        "--include-operation-id", "createTraining",
        "--include-operation-id", "getTraining",
        "--include-operation-id", "cancelTraining",
        "--include-operation-id", "streamTraining",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "25",
        "--seed", "20261202",
        "--workers", "1",
        "--request-timeout", "60",
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--no-color",
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"{output[-8000:]}\nAPI log:\n{stack.log()[-4000:]}"
    assert " passed" in output, output[-4000:]
