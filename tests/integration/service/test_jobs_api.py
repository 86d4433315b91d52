"""End to end over HTTP: the API under gunicorn, a Celery worker, a real redis-server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from openapi_spec_validator import validate as validate_spec

from shared.engine.batch import generate, predict
from shared.engine.model import LSTMModel
from shared.engine.registry import ModelRegistry
from shared.engine.sampling import SamplingParams
from tests.conftest import wait_for
from tests.integration.conftest import (
    ApiHandle,
    StartApi,
    WorkerHandle,
    job_record,
    wait_record,
)
from tests.integration.service.helpers import (
    check_problem,
    check_schema,
    get_job,
    sse_events,
    submit,
    wait_progress,
    wait_status,
)

# Characters: the tiny model needs well over ten seconds for them, so a test that watches or
# cancels such a job finds it still running (the API here allows that length).
LONG = 1_000_000


@pytest.fixture(scope="module")
def stack(start_api: StartApi, worker: WorkerHandle) -> ApiHandle:
    """Start the API in front of the worker, accepting LONG jobs."""
    return start_api(max_length=LONG)


@pytest.fixture(scope="module")
def tiny(model_dir: Path) -> LSTMModel:
    """Return the model the worker serves, loaded in this process."""
    return ModelRegistry(model_dir).get("tiny")


def test_submit_poll_and_output_equals_the_engine(
    api: httpx.Client, tiny: LSTMModel, spec: dict[str, Any]
) -> None:
    response = api.post(
        "/v1/jobs", json={"model": "tiny", "seed": "hello", "length": 300, "temperature": 0.8,
                          "random_seed": 123, "metadata": {"run": 1}},
    )  # fmt: skip
    assert response.status_code == 201
    created = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{created['id']}"
    # The answer shows the job as it was just after its message went out: a fast worker may
    # have started or even finished it by then.
    assert created["status"] in ("queued", "running", "succeeded")
    assert created["random_seed"] == 123
    check_schema(spec, "Job", created)
    job = wait_status(api, created["id"])
    expected = generate(tiny, "hello", SamplingParams(length=300, temperature=0.8), random_seed=123)
    assert job["status"] == "succeeded"
    assert job["output"] == expected.text
    assert job["progress"] == {"done": 300, "total": 300}
    assert job["finish_reason"] == "length" and job["error"] is None
    assert job["metadata"] == {"run": 1} and job["attempts"] == 1
    assert all(job["metrics"][name] is not None for name in job["metrics"])
    assert job["completed_at"] and job["expires_at"] > job["completed_at"]
    check_schema(spec, "Job", job)


def test_samples_stop_and_sampling_options_match_the_engine(
    api: httpx.Client, tiny: LSTMModel
) -> None:
    body = {"model": "tiny", "seed": "the ", "length": 200, "temperature": 1.2, "top_k": 6,
            "top_p": 0.9, "stop": ["e."], "n": 3, "random_seed": 9}  # fmt: skip
    job = wait_status(api, submit(api, **body)["id"])
    params = SamplingParams(length=200, temperature=1.2, top_k=6, top_p=0.9, stop=("e.",))
    expected = generate(tiny, "the ", params, random_seed=9, n=3)
    assert job["output"] == expected.texts
    assert job["finish_reason"] == [reason.value for reason in expected.finish_reasons]


def test_a_job_without_random_seed_reports_the_one_it_used(
    api: httpx.Client, tiny: LSTMModel
) -> None:
    job = wait_status(api, submit(api, model="tiny", length=50)["id"])
    assert job["input"]["random_seed"] is None and job["input"]["seed"] == ""
    again = generate(tiny, "", SamplingParams(length=50, temperature=tiny.defaults.temperature),
                     random_seed=job["random_seed"])  # fmt: skip
    assert job["output"] == again.text


def test_prefer_wait_holds_the_request_until_the_job_ends(api: httpx.Client) -> None:
    response = api.post("/v1/jobs", json={"model": "tiny", "length": 100},
                        headers={"Prefer": "wait=30"})  # fmt: skip
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"
    assert response.headers["Preference-Applied"] == "wait=30"


def test_prefer_wait_returns_the_job_as_it_stands_when_time_is_up(
    api: httpx.Client, worker: WorkerHandle
) -> None:
    # With the only worker stopped the job cannot end during the wait, however fast it runs.
    with worker.paused():
        started = time.monotonic()
        response = api.post("/v1/jobs", json={"model": "tiny", "length": LONG},
                            headers={"Prefer": "wait=1"})  # fmt: skip
        assert 0.9 < time.monotonic() - started < 10
        assert response.json()["status"] in ("queued", "running")
        api.post(f"/v1/jobs/{response.json()['id']}/cancel")


def test_stream_resumes_with_last_event_id_without_loss(api: httpx.Client) -> None:
    job_id = submit(api, model="tiny", length=LONG)["id"]  # it spans many flushes
    first: list[Any] = []
    with api.stream("GET", f"/v1/jobs/{job_id}/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(response):
            first.append(event)
            if sum(e.event == "output" for e in first) == 2:
                break  # drop the connection mid-job
    rest: list[Any] = []
    headers = {"Last-Event-ID": first[-1].id}
    with api.stream("GET", f"/v1/jobs/{job_id}/stream", headers=headers) as response:
        rest = list(sse_events(response))
    received = first + rest
    ids = [event.id for event in received]
    assert len(set(ids)) == len(ids)
    assert [e.data["status"] for e in received if e.event == "status"] == [
        "queued", "running", "succeeded",
    ]  # fmt: skip
    assert received[-1].event == "done"
    text = "".join(e.data["text"] for e in received if e.event == "output")
    assert text == get_job(api, job_id)["output"] and len(text) == LONG
    # A client that saw `done` and reconnects gets an empty stream that ends at once.
    headers = {"Last-Event-ID": received[-1].id}
    with api.stream("GET", f"/v1/jobs/{job_id}/stream", headers=headers) as response:
        assert list(sse_events(response)) == []


def test_cancel_running_stops_within_a_second_keeping_output(
    api: httpx.Client, tiny: LSTMModel, worker: WorkerHandle, redis_client: redis.Redis
) -> None:
    job_id = submit(api, model="tiny", length=LONG, random_seed=5)["id"]
    wait_progress(api, job_id, 100)
    # The cancel is recorded while the worker is stopped, so it cannot be late for a job that
    # just finished; the second counts from when the worker can act on it (it continues) to
    # the end Redis recorded, leaving out how late this test polls on a loaded machine.
    with worker.paused():
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        wait_record(redis_client, job_id, status="running", cancel_requested="1")
        resumed_at = time.time()  # the clock Redis stamps `completed_at` with
    job = wait_status(api, job_id, timeout=5)
    assert float(job_record(redis_client, job_id)["completed_at"]) - resumed_at < 1.0
    assert job["status"] == "canceled" and job["error"] is None
    assert 100 <= len(job["output"]) < LONG and job["progress"]["done"] < LONG
    params = SamplingParams(length=len(job["output"]), temperature=tiny.defaults.temperature)
    assert generate(tiny, "", params, random_seed=5).text == job["output"]
    assert api.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "canceled"


def test_idempotency_key_returns_the_same_job(api: httpx.Client) -> None:
    body = {"model": "tiny", "length": 10}
    headers = {"Idempotency-Key": "order-17"}
    first = api.post("/v1/jobs", json=body, headers=headers)
    again = api.post("/v1/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = api.post("/v1/jobs", json={**body, "length": 11}, headers=headers)
    check_problem(other, 422, "Idempotency-Key")
    assert len(api.get("/v1/jobs").json()["jobs"]) == 1


def test_put_creates_a_job_with_the_client_id_once(api: httpx.Client) -> None:
    body = {"model": "tiny", "length": 10}
    first = api.put("/v1/jobs/client-id-1", json=body)
    again = api.put("/v1/jobs/client-id-1", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] == "client-id-1"
    check_problem(api.put("/v1/jobs/client-id-1", json={**body, "length": 12}), 409, "id")
    check_problem(api.put("/v1/jobs/bad id!", json=body), 422, "id")


def test_unknown_job_is_404_everywhere(api: httpx.Client) -> None:
    check_problem(api.get("/v1/jobs/does-not-exist"), 404)
    check_problem(api.post("/v1/jobs/does-not-exist/cancel"), 404)
    check_problem(api.get("/v1/jobs/does-not-exist/stream"), 404)
    check_problem(api.get("/v1/jobs/%20bad"), 404)


def test_list_pages_and_filters(api: httpx.Client) -> None:
    ids = [submit(api, model="tiny", length=5)["id"] for _ in range(5)]
    for job_id in ids:
        wait_status(api, job_id)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = api.get("/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["jobs"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == ids[::-1]
    succeeded = api.get("/v1/jobs", params={"status": "succeeded", "limit": 100}).json()
    assert len(succeeded["jobs"]) == 5
    assert api.get("/v1/jobs", params={"status": "queued,running"}).json()["jobs"] == []
    check_problem(api.get("/v1/jobs", params={"status": "done"}), 422, "status")
    check_problem(api.get("/v1/jobs", params={"limit": 0}), 422, "limit")
    check_problem(api.get("/v1/jobs", params={"cursor": "zz"}), 422, "cursor")


def test_compatibility_route_answers_generated_text(api: httpx.Client) -> None:
    response = api.get("/generate", params={"inputText": "hello", "model": "tiny",
                                            "outputLength": 40})  # fmt: skip
    assert response.status_code == 200
    assert set(response.json()) == {"generated"} and len(response.json()["generated"]) == 40
    check_problem(api.get("/generate", params={"model": "tiny", "outputLength": "x"}), 422,
                  "outputLength")  # fmt: skip
    check_problem(api.get("/generate", params={"model": "nope"}), 422, "model")
    check_problem(api.get("/generate", params={"model": "tiny", "inputText": "ABC"}), 422,
                  "inputText")  # fmt: skip


def test_models_and_predict(api: httpx.Client, tiny: LSTMModel, spec: dict[str, Any]) -> None:
    models = api.get("/v1/models").json()
    check_schema(spec, "ModelList", models)
    assert [m["name"] for m in models["models"]] == ["tiny", "tiny2", "tiny3"]
    one = api.get("/v1/models/tiny").json()
    assert one["vocab_size"] == len(tiny.vocab) and one["mode"] == "stateful"
    check_problem(api.get("/v1/models/nope"), 404)
    response = api.post("/v1/models/tiny/predict", json={"seed": "the", "temperature": 0.7})
    assert response.status_code == 200
    check_schema(spec, "Prediction", response.json())
    got = response.json()["probabilities"]
    expected = predict(tiny, "the", temperature=0.7)
    assert [p["char"] for p in got] == [p.char for p in expected]
    assert [p["probability"] for p in got] == pytest.approx([p.probability for p in expected])
    top = api.post("/v1/models/tiny/predict", json={"seed": "the", "top": 3}).json()
    assert len(top["probabilities"]) == 3
    check_problem(api.post("/v1/models/tiny/predict", json={"seed": "THE"}), 422, "seed")
    check_problem(api.post("/v1/models/nope/predict", json={}), 404)


def test_openapi_document_is_valid_and_the_docs_page_renders_it(
    stack: ApiHandle, spec: dict[str, Any]
) -> None:
    validate_spec(spec)
    assert spec["openapi"].startswith("3.1")
    docs = httpx.get(f"{stack.url}/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in docs.text
    assert 'src="http' not in docs.text and 'href="http' not in docs.text  # nothing external


def test_health_and_readiness(stack: ApiHandle, spec: dict[str, Any]) -> None:
    health = httpx.get(f"{stack.url}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] >= 1
    check_schema(spec, "Ready", ready.json())


def test_progress_and_partial_output_are_visible_while_running(api: httpx.Client) -> None:
    job_id = submit(api, model="tiny", length=LONG)["id"]
    wait_progress(api, job_id, 50)
    samples = []
    for _ in range(3):
        job = get_job(api, job_id)
        samples.append((job["progress"]["done"], len(job["output"])))
        wait_for(lambda d=job["progress"]["done"]: get_job(api, job_id)["progress"]["done"] > d,
                 2.0, "progress to advance")  # fmt: skip
    assert all(done >= length > 0 for done, length in samples)
    assert samples == sorted(samples)
    api.post(f"/v1/jobs/{job_id}/cancel")
    wait_status(api, job_id)
