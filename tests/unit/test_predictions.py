"""Predictions over a real Redis: a model's own list, and the one list of uploaded models."""

from __future__ import annotations

import threading
from typing import Any

import redis

from shared import predictions


def serve_once(client: redis.Redis, models: list[str], *, uploads: bool) -> threading.Thread:
    """Answer one request in a thread, echoing the model and body it came with."""

    def echo(model: str, body: dict[str, Any]) -> Any:
        return {"model": model, "version": body.get("version"), "seed": body["seed"]}

    thread = threading.Thread(
        target=predictions.serve_one, args=(client, models, echo, 10.0), kwargs={"uploads": uploads}
    )
    thread.start()
    return thread


def test_a_directory_model_is_asked_on_its_own_list(redis_client: redis.Redis) -> None:
    thread = serve_once(redis_client, ["tiny"], uploads=False)
    answer = predictions.ask(redis_client, "tiny", {"seed": "ab"}, 10.0)
    thread.join()
    assert answer == {"model": "tiny", "version": None, "seed": "ab"}


def test_an_upload_is_asked_on_the_shared_list_with_its_version(
    redis_client: redis.Redis,
) -> None:
    thread = serve_once(redis_client, ["tiny"], uploads=True)
    answer = predictions.ask(redis_client, "mine", {"seed": "c"}, 10.0, version="d1" * 32)
    thread.join()
    assert answer == {"model": "mine", "version": "d1" * 32, "seed": "c"}


def test_a_worker_not_serving_uploads_leaves_their_requests(redis_client: redis.Redis) -> None:
    assert not predictions.serve_one(redis_client, ["tiny"], lambda m, b: {}, 0.2)
    predictions.ask(redis_client, "mine", {"seed": "c"}, 0.1, version="abc")  # nobody answers
    assert not predictions.serve_one(redis_client, [], lambda m, b: {}, 0.1)
    assert redis_client.llen(predictions.UPLOADED_KEY) == 1  # left for a worker of uploads
