"""Request parsing: bodies, JSON, and the typed request models with their limits."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from flask import Request
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, WithJsonSchema
from werkzeug.exceptions import RequestEntityTooLarge

from api.problems import FieldError, Problem, invalid
from shared.engine.seeds import MAX_RANDOM_SEED
from shared.jobs.records import JOB_ID_PATTERN
from shared.settings import Settings
from shared.webhooks.events import ALL_EVENTS, WebhookEvent

MAX_TEMPERATURE = 5.0
MAX_TOP_K = 100_000
MAX_STOP_SEQUENCES = 8
MAX_STOP_CHARS = 100
MAX_METADATA_BYTES = 4096
MAX_WEBHOOK_CHARS = 2048
MAX_MODEL_NAME = 128
UnknownCharsPolicy = Literal["error", "drop", "lowercase"]
# The event names as JSON strings (strict mode alone would want enum instances), inline in
# the schema rather than a $ref to a definition of their own.
EventName = Annotated[
    WebhookEvent,
    Strict(False),
    WithJsonSchema({"type": "string", "enum": [event.value for event in WebhookEvent]}),
]
StopSequence = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
JSON_TYPES = ("application/json", "application/problem+json")

_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class PredictRequest(BaseModel):
    """The body of `POST /v1/models/{name}/predict`."""

    model_config = _STRICT

    seed: str = Field("", description="Text fed to the model; empty means its default seed.")
    temperature: float = Field(1.0, ge=0, le=MAX_TEMPERATURE, description="0 means greedy.")
    unknown_chars: UnknownCharsPolicy = "error"
    top: int | None = Field(None, ge=1, description="Return only the most likely characters.")


def job_request_model(settings: Settings) -> type[BaseModel]:
    """Return the model of a job request, with the limits of these settings."""

    class JobRequest(BaseModel):
        """The body of `POST /v1/jobs` and `PUT /v1/jobs/{id}`."""

        model_config = _STRICT

        model: str = Field(
            settings.default_model,
            min_length=1,
            max_length=MAX_MODEL_NAME,
            description="Name of the model (see GET /v1/models).",
        )
        seed: str = Field(
            "",
            max_length=settings.max_seed_chars,
            description="Text the generation continues; empty means the model's default seed.",
        )
        length: int | None = Field(
            None,
            ge=1,
            le=settings.max_length,
            description="Characters to generate per sample; default: the model's.",
        )
        temperature: float | None = Field(
            None,
            ge=0,
            le=MAX_TEMPERATURE,
            description="Sampling temperature, 0 = greedy; default: the model's.",
        )
        top_k: int | None = Field(
            None, ge=1, le=MAX_TOP_K, description="Sample among the k likeliest."
        )
        top_p: float | None = Field(
            None, gt=0, le=1, description="Sample from the smallest set with this probability."
        )
        stop: list[StopSequence] = Field(
            default_factory=list,
            max_length=MAX_STOP_SEQUENCES,
            description="Generation ends when the text ends with one of these (not included).",
        )
        random_seed: int | None = Field(
            None,
            ge=0,
            le=MAX_RANDOM_SEED,
            description="Makes the output reproducible; default: a fresh one (reported back).",
        )
        n: int = Field(1, ge=1, le=settings.max_n, description="Number of samples.")
        unknown_chars: UnknownCharsPolicy = Field(
            "error", description="Seed characters outside the vocabulary: refuse, drop, lowercase."
        )
        webhook: str | None = Field(
            None,
            min_length=1,
            max_length=MAX_WEBHOOK_CHARS,
            description="URL that receives the job on its events.",
        )
        webhook_events_filter: list[EventName] = Field(
            default_factory=lambda: list(ALL_EVENTS),
            max_length=len(ALL_EVENTS),
            description="Events sent to the webhook (`completed` is always sent).",
        )
        metadata: dict[str, Any] = Field(
            default_factory=dict, description="Free-form data kept with the job."
        )
        priority: Literal["high", "normal", "low"] = Field(
            "normal",
            description="Order among your own jobs: higher first, then older first. Between "
            "API keys, freed slots go to the keys with jobs waiting in turn.",
        )
        continue_from: str | None = Field(
            None,
            pattern=JOB_ID_PATTERN,
            description=(
                "Id of a succeeded job whose text this one goes on with: its model, seed, "
                "samples and random stream continue, so its output followed by this one's is "
                "what one job of both lengths gives. Excludes seed and random_seed."
            ),
        )

    return JobRequest


def field_name(location: tuple[int | str, ...]) -> str:
    """Return a field path such as `stop[2]` from a pydantic error location."""
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def validate(model: type[BaseModel], payload: dict[str, Any]) -> Any:
    """Validate a payload with a request model, raising a 422 problem naming each field."""
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        errors = [FieldError(field_name(e["loc"]), e["msg"]) for e in error.errors()]
        raise invalid(errors) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json_object(request: Request) -> dict[str, Any]:
    """Return the request body as a JSON object, or raise a 4xx problem saying what is wrong."""
    if request.mimetype and request.mimetype not in JSON_TYPES:
        detail = f"send a JSON body with Content-Type: application/json, not {request.mimetype}"
        raise Problem(415, "Unsupported media type", detail, "unsupported-media-type")
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body is cut at the limit rather than refused: refuse it here.
        raise RequestEntityTooLarge()
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"not valid UTF-8 (byte {error.start})"
        raise Problem(
            400, "Invalid body", f"body: {message}", "invalid-body", [FieldError("body", message)]
        ) from None
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        message = f"not valid JSON: {error}"
        raise Problem(
            400, "Invalid body", f"body: {message}", "invalid-body", [FieldError("body", message)]
        ) from None
    if not isinstance(payload, dict):
        raise invalid([FieldError("body", "must be a JSON object")])
    return payload


def check_metadata(metadata: dict[str, Any]) -> None:
    """Refuse metadata larger than the limit."""
    size = len(json.dumps(metadata, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        message = f"must be at most {MAX_METADATA_BYTES} bytes as JSON, got {size}"
        raise invalid([FieldError("metadata", message)])
