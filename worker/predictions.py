"""A generation worker's answers to the API's next-character predictions (shared.predictions)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from shared import predictions
from shared.engine.batch import predict
from shared.engine.model import LSTMModel

log = logging.getLogger(__name__)
POLL_S = 1.0  # how long one wait for a request lasts, so a stopping worker notices


def answer(model: LSTMModel, body: dict[str, Any]) -> dict[str, Any]:
    """Return the ranked next characters for a request, or the error that prevented them."""
    try:
        ranked = predict(model, body["seed"], body["temperature"], body["unknown_chars"])
    except (KeyError, TypeError, ValueError) as error:
        return {"error": str(error)}
    return {"probabilities": [[p.char, p.probability] for p in ranked]}


# Returns the loaded model of a name and version ("": the model directory's, else a digest).
ModelOf = Callable[[str, str], LSTMModel]


def _answer_for(model_of: ModelOf, name: str, body: dict[str, Any]) -> Any:
    try:
        return answer(model_of(name, str(body.get("version", ""))), body)
    except Exception as error:  # a model that cannot be loaded must not stop the answers
        log.exception("prediction for model %s failed", name)
        return {"error": f"model {name!r} could not be loaded: {error}", "unavailable": True}


def serve(
    client: redis.Redis,
    models: list[str],
    model_of: ModelOf,
    stopping: threading.Event,
    *,
    uploads: bool = False,
) -> None:
    """Answer prediction requests for `models`, and with `uploads` for uploaded models, until
    `stopping` is set."""
    while not stopping.is_set():
        try:
            predictions.serve_one(
                client, models, lambda m, b: _answer_for(model_of, m, b), POLL_S, uploads=uploads
            )
        except redis.RedisError as error:
            log.warning("could not answer predictions: %s", error)
            stopping.wait(POLL_S)
