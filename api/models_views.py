"""`/v1/models`: the models the service runs, their properties, next-character predictions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import authenticate
from api.services import services
from api.submission import check_seed
from api.validation import PredictRequest, read_json_object, validate
from shared.engine.batch import predict

bp = Blueprint("models", __name__, url_prefix="/v1/models")
bp.before_request(authenticate)


def _describe(name: str) -> dict[str, Any]:
    model = services().load_model(name)
    return {**model.properties(), "name": services().resolve(name)}


@bp.get("")
def list_models() -> Response:
    """Return every model with its properties."""
    return jsonify({"models": [_describe(name) for name in services().model_names()]})


@bp.get("/<name>")
def get_model(name: str) -> Response:
    """Return one model's ml5-style properties."""
    return jsonify(_describe(name))


@bp.post("/<name>/predict")
def predict_next(name: str) -> Response:
    """Return the next-character distribution after a seed, most likely first."""
    model = services().load_model(name)
    body: PredictRequest = validate(PredictRequest, read_json_object(request))
    check_seed(model, body.seed, body.unknown_chars)
    seed = body.seed or model.defaults.seed
    ranked = predict(model, seed, temperature=body.temperature, unknown=body.unknown_chars)
    if body.top is not None:
        ranked = ranked[: body.top]
    return jsonify(
        {
            "model": name,
            "seed": seed,
            "temperature": body.temperature,
            "probabilities": [{"char": p.char, "probability": p.probability} for p in ranked],
        }
    )
