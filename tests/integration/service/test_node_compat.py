"""The Node server's clients, unchanged: `GET <any path>?inputText=...` over real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis

from shared.engine.batch import generate
from shared.engine.registry import ModelRegistry
from shared.engine.sampling import SamplingParams
from tests.integration.conftest import ApiHandle, StartApi, StartWorker
from tests.integration.service.helpers import check_problem

KEY = "node-key"
OLD_NAME = "narnia_1_20"  # a model name the old server's clients send


@pytest.fixture(scope="module")
def stack(start_api: StartApi, start_worker: StartWorker) -> ApiHandle:
    """Start a worker for `tiny` and `tiny2`, and an API with the old name aliased to `tiny2`."""
    start_worker(worker_models="tiny,tiny2")
    return start_api(compat_model="tiny", model_aliases=f"{OLD_NAME}=tiny2")


def only_job(api: httpx.Client) -> dict[str, object]:
    """Return the one job the request made."""
    jobs = api.get("/v1/jobs").json()["jobs"]
    assert len(jobs) == 1
    job: dict[str, object] = jobs[0]
    return job


def test_root_with_input_text_answers_the_node_json_with_its_defaults(
    api: httpx.Client, model_dir: Path
) -> None:
    response = api.get("/", params={"inputText": "the "})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    generated = response.json()["generated"]
    job = only_job(api)
    assert job["model"] == "tiny" and job["output"] == generated
    assert job["input"] == {**job["input"], "length": 100, "temperature": 0.75}  # type: ignore[dict-item]
    params = SamplingParams(length=100, temperature=0.75)
    tiny = ModelRegistry(model_dir).get("tiny")
    assert generated == generate(tiny, "the ", params, random_seed=job["random_seed"]).text  # type: ignore[arg-type]


def test_any_path_and_an_old_model_name_work(api: httpx.Client, model_dir: Path) -> None:
    response = api.get(
        "/some/old/path", params={"inputText": "he", "model": OLD_NAME, "outputLength": 30}
    )
    assert response.status_code == 200, response.text
    generated = response.json()["generated"]
    job = only_job(api)
    assert job["model"] == "tiny2" and len(generated) == 30
    tiny2 = ModelRegistry(model_dir).get("tiny2")
    params = SamplingParams(length=30, temperature=0.75)
    assert generated == generate(tiny2, "he", params, random_seed=job["random_seed"]).text  # type: ignore[arg-type]


def test_the_page_and_the_v1_api_are_left_alone(
    api: httpx.Client, redis_client: redis.Redis
) -> None:
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    listing = api.get("/v1/jobs", params={"inputText": "x"})
    assert listing.status_code == 200 and listing.json()["jobs"] == []
    check_problem(api.get("/nowhere"), 404)


def test_errors_keep_real_status_codes_and_name_the_parameter(api: httpx.Client) -> None:
    check_problem(
        api.get("/", params={"inputText": "a", "outputLength": "abc"}), 422, "outputLength"
    )
    check_problem(
        api.get("/x", params={"inputText": "a", "outputLength": "0"}), 422, "outputLength"
    )
    check_problem(api.get("/", params={"inputText": "a", "model": "nope"}), 422, "model")
    check_problem(api.get("/", params={"inputText": "ABC", "model": "tiny"}), 422, "inputText")
    check_problem(api.get("/", params={"inputText": "a", "temperature": "hot"}), 422, "temperature")


def test_api_keys_apply_to_node_requests(start_api: StartApi, redis_client: redis.Redis) -> None:
    keyed = start_api(api_keys=KEY, compat_model="tiny")
    denied = httpx.get(f"{keyed.url}/", params={"inputText": "a", "outputLength": 5})
    assert denied.status_code == 401
    allowed = keyed.client(KEY).get("/", params={"inputText": "a", "outputLength": 5})
    assert allowed.status_code == 200 and len(allowed.json()["generated"]) == 5
