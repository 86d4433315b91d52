"""`/v1/models`: the models the service runs, their properties, next-character predictions;
uploading, replacing and deleting a key's own models."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import authenticate, current_owner
from api.problems import Problem, not_found
from api.services import KnownModel, services
from api.submission import check_seed
from api.uploads import read_form, receive
from api.validation import PredictRequest, read_json_object, validate
from shared import metrics, predictions
from shared.catalog.records import ModelSource

bp = Blueprint("models", __name__, url_prefix="/v1/models")
bp.before_request(authenticate)


def _describe(model: KnownModel, name: str) -> dict[str, Any]:
    return model.to_json()


@bp.get("")
def list_models() -> Response:
    """Return every model the caller may use with its properties."""
    found = services()
    owner = current_owner()
    names = found.visible_names(owner)
    return jsonify({"models": [_describe(found.load_model(n, owner=owner), n) for n in names]})


@bp.get("/<name>")
def get_model(name: str) -> Response:
    """Return one model's ml5-style properties."""
    return jsonify(_describe(services().load_model(name, owner=current_owner()), name))


@bp.post("")
def upload_model() -> tuple[Response, int, dict[str, str]]:
    """Add a model from an uploaded archive (multipart: name, file, description)."""
    return _upload(None)


@bp.put("/<name>")
def put_model(name: str) -> tuple[Response, int, dict[str, str]]:
    """Add a model under this name, or replace the caller's model of this name."""
    return _upload(name)


def _upload(name: str | None) -> tuple[Response, int, dict[str, str]]:
    found = services()
    upload = read_form(request, found, name)
    info, created = receive(found, current_owner(), upload, replace=name is not None)
    location = {"Location": f"/v1/models/{info.name}"}
    return jsonify(info.to_json()), 201 if created else 200, location


@bp.delete("/<name>")
def delete_model(name: str) -> Response:
    """Delete the caller's uploaded model; jobs running on it finish, new ones are refused."""
    found = services()
    if name in found.model_names():
        detail = f"model {name!r} is in the model directory; only uploaded models can be deleted"
        raise Problem(409, "Conflict", detail, "model-in-directory")
    if not found.catalog.delete(name, current_owner()):
        raise not_found(f"model {name!r}")
    return Response(status=204)


@bp.post("/<name>/predict")
def predict_next(name: str) -> Response:
    """Return the next-character distribution after a seed, most likely first."""
    model = services().load_model(name, owner=current_owner())
    body: PredictRequest = validate(PredictRequest, read_json_object(request))
    check_seed(model, body.seed, body.unknown_chars)
    seed = body.seed or model.defaults.seed
    ranked = _ask_worker(name, model, seed, body)
    if body.top is not None:
        ranked = ranked[: body.top]
    return jsonify(
        {
            "model": name,
            "seed": seed,
            "temperature": body.temperature,
            "probabilities": [{"char": c, "probability": p} for c, p in ranked],
        }
    )


def _ask_worker(
    name: str, known: KnownModel, seed: str, body: PredictRequest
) -> list[tuple[str, float]]:
    """Have a generation worker of the model compute the prediction (it holds the weights, or
    for an upload, loads this version of it)."""
    found = services()
    model = found.resolve(name)
    client = found.store.client
    uploaded = known.source is ModelSource.UPLOAD
    serving = [
        w
        for w in metrics.live_workers(client).values()
        if (w.get("uploads") if uploaded else model in w.get("batches", {}))
    ]
    if not serving:
        detail = f"no generation worker of model {model!r} is up to compute the prediction"
        raise Problem(503, "No worker for this model", detail, "no-worker")
    timeout = found.settings.predict_timeout_s
    request_body = {"seed": seed, "temperature": body.temperature}
    answer = predictions.ask(
        client,
        model,
        {**request_body, "unknown_chars": body.unknown_chars},
        timeout,
        version=known.digest if uploaded else None,
    )
    if answer is None:
        detail = f"no generation worker of model {model!r} answered within {timeout:g} s"
        raise Problem(504, "Prediction took too long", detail, "predict-timeout")
    if answer.get("unavailable"):
        raise Problem(503, "Model unavailable", str(answer["error"]), "model-unavailable")
    if "error" in answer:
        raise Problem(422, "Prediction refused", str(answer["error"]), "predict-refused")
    return [(str(c), float(p)) for c, p in answer["probabilities"]]
