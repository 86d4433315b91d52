"""`/v1/trainings`: create, read and cancel training jobs (run by `--training` workers)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authenticate, current_owner
from api.problems import FieldError, Problem, invalid, not_found
from api.services import Services, services
from api.streaming import LAST_EVENT_ID, sse_response, training_events
from api.submission import requested_wait
from api.training_form import FLOAT_FIELDS, INT_FIELDS, read_training_form
from api.validation import JSON_TYPES, MAX_WEBHOOK_CHARS, read_json_object, validate
from shared import metrics
from shared.celery_app import enqueue_training
from shared.engine.registry import NAME_PATTERN
from shared.jobs.records import JOB_ID_PATTERN, JobStatus
from shared.trainings.records import Training
from shared.trainings.serialize import serialize_training
from shared.trainings.webhooks import emit_training_event
from shared.webhooks.events import WebhookEvent
from shared.webhooks.ssrf import WebhookURLError, validate_webhook_url

bp = Blueprint("trainings", __name__, url_prefix="/v1/trainings")
bp.before_request(authenticate)

_ID = re.compile(JOB_ID_PATTERN)
WAIT_POLL_S = 0.2  # how often `Prefer: wait` looks at the record


class TrainingRequest(BaseModel):
    """The body of `POST /v1/trainings`."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN.pattern)
    text: str = Field(min_length=1, description="The corpus to train on.")
    layers: list[int] = Field([128], min_length=1, max_length=4)
    epochs: int = Field(1, ge=1)
    seq_len: int = Field(100, ge=2, le=1000)
    batch_size: int = Field(64, ge=1, le=1024)
    learning_rate: float = Field(0.002, gt=0, le=1)
    validation_split: float = Field(0.1, ge=0, lt=1)
    base_model: str | None = Field(None, min_length=1, description="A model to train further.")
    webhook: str | None = Field(None, max_length=MAX_WEBHOOK_CHARS)


def _response(training: Training, status: int = 200) -> Response:
    response = jsonify(serialize_training(training))
    response.status_code = status
    return response


def _owned(training_id: str) -> Training:
    found = (
        services().trainings.owned(training_id, current_owner()) if _ID.match(training_id) else None
    )
    if found is None:
        raise not_found(f"training {training_id!r}")
    return found


def _check_request(svc: Services, body: TrainingRequest, owner: str) -> None:
    """Refuse a taken name (409), a corpus too long and limits broken (422)."""
    errors: list[FieldError] = []
    if len(body.text) > svc.settings.max_training_chars:
        errors.append(
            FieldError("text", f"must be at most {svc.settings.max_training_chars} characters")
        )
    if body.epochs > svc.settings.max_training_epochs:
        errors.append(FieldError("epochs", f"must be at most {svc.settings.max_training_epochs}"))
    if any(units < 1 or units > 1024 for units in body.layers):
        errors.append(FieldError("layers", "every layer must have 1 to 1024 units"))
    if body.webhook is not None:
        try:
            validate_webhook_url(body.webhook, svc.settings)
        except WebhookURLError as error:
            errors.append(FieldError("webhook", str(error)))
    if errors:
        raise invalid(errors)
    if body.base_model is not None:
        svc.load_model(body.base_model, owner=owner, field="base_model")
    if body.name in svc.model_names() or svc.catalog.get(body.name) is not None:
        detail = f"model name {body.name!r} is in use"
        raise Problem(409, "Conflict", detail, "model-name-taken", [FieldError("name", detail)])


def _read_body(svc: Services) -> dict[str, Any]:
    """Return the request as a JSON body: JSON itself, or a form with the corpus as `file`."""
    if request.mimetype == "multipart/form-data":
        return read_training_form(request, svc.settings.max_training_chars)
    if request.mimetype and request.mimetype not in JSON_TYPES:
        detail = (
            "send the training as JSON (Content-Type: application/json) or as "
            f"multipart/form-data with the corpus as the file `file`, not {request.mimetype}"
        )
        raise Problem(415, "Unsupported media type", detail, "unsupported-media-type")
    return read_json_object(request)


def _wait(svc: Services, training: Training, wait: float) -> Training:
    deadline = time.monotonic() + wait
    while not training.status.is_final and time.monotonic() < deadline:
        time.sleep(WAIT_POLL_S)
        training = svc.trainings.get(training.id) or training
    return training


@bp.post("")
def create_training() -> Response:
    """Queue a training; on success its model is registered under `name`."""
    svc = services()
    owner = current_owner()
    body: TrainingRequest = validate(TrainingRequest, _read_body(svc))
    _check_request(svc, body, owner)
    params = body.model_dump(exclude={"text", "webhook", "name"})
    params["chars"] = len(body.text)
    training = Training(
        id=uuid.uuid4().hex,
        owner=owner,
        name=body.name,
        params=params,
        created_at=time.time(),
        webhook=body.webhook,
    )
    svc.trainings.put_corpus(training.id, body.text)
    svc.trainings.create(training)
    enqueue_training(svc.celery, training.id)
    metrics.record_training(svc.store.client, JobStatus.QUEUED.value)
    _confirm_replicated(svc, training.id)
    wait = requested_wait(request.headers.get("Prefer"), svc.settings.max_wait_s)
    if wait is not None:
        training = _wait(svc, training, wait)
    response = _response(training, 201)
    response.headers["Location"] = url_for("trainings.get_training", training_id=training.id)
    if wait is not None:
        response.headers["Preference-Applied"] = f"wait={wait:g}"
    return response


def _confirm_replicated(svc: Services, training_id: str) -> None:
    """Answer 201 only once `redis_min_replicas` replicas hold the training (as for a job)."""
    short = svc.replicas_short()
    if short is None:
        return
    held, wanted = short
    detail = (
        f"training {training_id} is stored, but {held} of the {wanted} replicas it must reach "
        "confirmed it in time; it may still run: GET it to see, or create it again"
    )
    raise Problem(
        503,
        "Not replicated",
        detail,
        "not-replicated",
        headers={"Retry-After": str(svc.settings.retry_after_s)},
        extra={"training_id": training_id},
    )


@bp.get("/<training_id>")
def get_training(training_id: str) -> Response:
    """Return a training with its progress and metrics."""
    return _response(_owned(training_id))


@bp.get("/<training_id>/events")
def stream_training(training_id: str) -> Response:
    """Stream a training's status, progress and metrics as Server-Sent Events until it ends."""
    training = _owned(training_id)
    header = request.headers.get("Last-Event-ID")
    after, field = (header, "Last-Event-ID") if header else (request.args.get("after"), "after")
    if after is not None and not LAST_EVENT_ID.match(after):
        raise invalid([FieldError(field, "must be an event id from this stream")])
    return sse_response(training_events(services().trainings, training.id, after or "0-0"))


@bp.post("/<training_id>/cancel")
def cancel_training(training_id: str) -> Response:
    """Cancel a training: a queued one ends now, a running one at its next step."""
    svc = services()
    before = _owned(training_id)
    canceled = svc.trainings.cancel(training_id)
    if canceled is None:
        raise not_found(f"training {training_id!r}")
    if canceled.status.is_final and not before.status.is_final:  # it ended here, never run
        emit_training_event(svc.trainings, canceled, WebhookEvent.COMPLETED, svc.settings.base_url)
    return _response(canceled, 202 if not canceled.status.is_final else 200)


def _problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {"application/problem+json": {"schema": schema}}}


def _ok(description: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Training"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _form_schema() -> dict[str, Any]:
    """Return the multipart form of a training: the JSON body's fields, the corpus a file."""
    fields = TrainingRequest.model_json_schema()["properties"]
    numbers = {
        key: {k: v for k, v in fields[key].items() if k not in ("default", "title")}
        for key in INT_FIELDS + FLOAT_FIELDS
    }
    return {
        "type": "object",
        "required": ["name", "file"],
        "properties": {
            "name": {k: v for k, v in fields["name"].items() if k != "title"},
            "file": {
                "type": "string",
                "format": "binary",
                "description": "The corpus to train on, UTF-8 text.",
            },
            "layers": {
                "type": "string",
                "description": 'Units per LSTM layer: "128,128" or a JSON list.',
            },
            **numbers,
            "base_model": {
                "type": "string",
                "minLength": 1,
                "description": "A model to train further.",
            },
            "webhook": {"type": "string", "maxLength": MAX_WEBHOOK_CHARS},
        },
    }


def openapi_schemas() -> dict[str, Any]:
    """Return the schemas of a training request and of a training."""
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    counts = ("epoch", "epochs", "step", "steps")
    return {
        "TrainingRequest": TrainingRequest.model_json_schema(),
        "TrainingForm": _form_schema(),
        "TrainingEvent": {
            "description": "One Server-Sent Event; `data` is JSON: {status, error?} for "
            "`status` and {status} for `done`, the training's `progress` for `progress`, one "
            "epoch's losses for `metrics`.",
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "id": {"type": "string", "pattern": LAST_EVENT_ID.pattern},
                "event": {"type": "string", "enum": ["status", "progress", "metrics", "done"]},
                "data": {"type": "string", "contentMediaType": "application/json"},
                "retry": {"type": "integer"},
            },
        },
        "Training": {
            "type": "object",
            "required": ["id", "status", "name", "params", "progress", "metrics"],
            "properties": {
                "id": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": [s.value for s in JobStatus],
                },
                "name": {"type": "string"},
                "params": {"type": "object"},
                "progress": {
                    "type": "object",
                    "required": list(counts),
                    "properties": {c: {"type": "integer", "minimum": 0} for c in counts},
                },
                "metrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["epoch", "loss_bpc", "val_loss_bpc"],
                        "properties": {
                            "epoch": {"type": "integer"},
                            "loss_bpc": {"type": "number"},
                            "val_loss_bpc": {"type": ["number", "null"]},
                        },
                    },
                },
                "error": {"type": ["string", "null"]},
                "attempts": {"type": "integer", "minimum": 0},
                "created_at": nullable_time,
                "started_at": nullable_time,
                "finished_at": nullable_time,
            },
        },
    }


def openapi_paths(auth: bool) -> dict[str, Any]:
    """Return the path items of the trainings routes."""
    training_id = {
        "name": "training_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
    }
    errors = {
        "404": _problem("No such training (or not yours)"),
        "503": _problem("The job store (Redis) is unreachable"),
    }
    if auth:
        errors["401"] = _problem("Missing or unknown API key")
    body = {"$ref": "#/components/schemas/TrainingRequest"}
    form = {"$ref": "#/components/schemas/TrainingForm"}
    return {
        "/v1/trainings": {
            "post": {
                "operationId": "createTraining",
                "summary": "Train a model on a text and register it under `name`",
                "parameters": [
                    {"name": "Prefer", "in": "header", "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": body},
                        "multipart/form-data": {"schema": form},
                    },
                },
                "responses": {
                    "201": _ok("Queued (or final, with `Prefer: wait`)"),
                    "400": _problem("The body is not a JSON object"),
                    "409": _problem("The name is in use"),
                    "413": _problem("The body, or the corpus file, is too large"),
                    "415": _problem("The body is neither JSON nor a multipart form"),
                    "422": _problem("A field breaks the rules"),
                    **errors,
                },
            },
        },
        "/v1/trainings/{training_id}": {
            "parameters": [training_id],
            "get": {
                "operationId": "getTraining",
                "summary": "A training with its progress and metrics",
                "responses": {"200": _ok("OK"), **errors},
            },
        },
        "/v1/trainings/{training_id}/events": {
            "parameters": [training_id],
            "get": {
                "operationId": "streamTraining",
                "summary": "Server-Sent Events: `status`, `progress`, `metrics`, then `done`",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "Resume after this event.",
                        "schema": {"type": "string", "pattern": LAST_EVENT_ID.pattern},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "description": "Resume after this event (Last-Event-ID wins).",
                        "schema": {"type": "string", "pattern": LAST_EVENT_ID.pattern},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The events so far, then each as it happens",
                        "content": {
                            "text/event-stream": {
                                "schema": {"$ref": "#/components/schemas/TrainingEvent"}
                            }
                        },
                    },
                    "422": _problem("Last-Event-ID or after is not an event id"),
                    **errors,
                },
            },
        },
        "/v1/trainings/{training_id}/cancel": {
            "parameters": [training_id],
            "post": {
                "operationId": "cancelTraining",
                "summary": "Cancel a training: queued ones end now, running ones at the next step",
                "responses": {
                    "200": _ok("Already final, or canceled while queued"),
                    "202": _ok("Cancel requested: a running training stops at its next step"),
                    **errors,
                },
            },
        },
    }
