"""The OpenAPI 3.1 document of the API, built from the same request models that validate."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api import delivery_views, trainings_views
from api.streaming import LAST_EVENT_ID
from api.uploads import MAX_DESCRIPTION_CHARS
from api.validation import MAX_TEMPERATURE, PredictRequest
from shared.engine.registry import NAME_PATTERN
from shared.jobs.records import JOB_ID_PATTERN, JobStatus
from shared.settings import Settings
from shared.webhooks.events import WebhookEvent

JSON = "application/json"
PROBLEM = "application/problem+json"
STATUSES = [status.value for status in JobStatus]
DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    400: "The body is not valid UTF-8 JSON",
    401: "Missing or unknown API key",
    404: "No such resource (or not yours)",
    204: "Deleted",
    409: "The id is taken by a different job, or the model name by another model",
    413: "The body is larger than the limit",
    415: "The body is not JSON",
    422: "A field breaks a rule; `errors` names each field and limit",
    429: "Too many queued jobs, or a limit of your key (`limit` names it); see `Retry-After`",
    502: "The job ended without succeeding",
    503: (
        "The job store (Redis) is unreachable or failing over, the replicas did not confirm a "
        "new job in time (`not-replicated`, with its `job_id`), a model cannot be loaded,"
        " no worker checked an upload in time, or no worker runs the model"
    ),
    504: "The job did not finish within the longest wait, or no worker answered the prediction",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    names = list(properties) if required is None else required
    return {"type": "object", "required": names, "properties": properties}


def _job_schema() -> dict[str, Any]:
    seconds = {"type": ["number", "null"], "minimum": 0}
    timestamp = {"type": ["string", "null"], "format": "date-time"}
    reason = {"type": "string", "enum": ["length", "stop"]}
    return _object(
        {
            "id": {"type": "string", "pattern": JOB_ID_PATTERN},
            "status": {"type": "string", "enum": STATUSES},
            "model": {"type": "string"},
            "input": {"type": "object", "description": "The request, with defaults filled in."},
            "output": {
                "description": "Text so far (final once done); a list when n > 1.",
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            },
            "progress": _object(
                {"done": {"type": "integer", "minimum": 0}, "total": {"type": "integer"}}
            ),
            "error": _nullable(
                _object({"type": {"type": "string"}, "message": {"type": "string"}})
            ),
            "finish_reason": {
                "oneOf": [{"type": "null"}, reason, {"type": "array", "items": reason}]
            },
            "random_seed": {"type": "integer", "minimum": 0},
            "attempts": {"type": "integer", "minimum": 0},
            "metrics": _object(
                {
                    "queue_time_s": seconds,
                    "generation_time_s": seconds,
                    "total_time_s": seconds,
                    "chars_per_s": seconds,
                }
            ),
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": timestamp,
            "completed_at": timestamp,
            "expires_at": timestamp,
            "urls": _object({name: {"type": "string"} for name in ("get", "cancel", "stream")}),
            "webhook": {"type": ["string", "null"]},
            "webhook_events_filter": {
                "type": "array",
                "items": {"type": "string", "enum": [event.value for event in WebhookEvent]},
            },
            "metadata": {"type": "object"},
        }
    )


def _schemas(job_request: type[BaseModel]) -> dict[str, Any]:
    template = "#/components/schemas/{model}"
    model_schema = {
        "type": "object",
        "required": ["name", "format", "vocab", "vocab_size", "mode", "defaults"],
        "properties": {
            "name": {"type": "string"},
            "format": {"type": "string"},
            "vocab": {"type": "array", "items": {"type": "string"}},
            "vocab_size": {"type": "integer"},
            "cells_amount": {"type": "integer"},
            "layer_sizes": {"type": "array", "items": {"type": "integer"}},
            "window": {"type": ["integer", "null"]},
            "mode": {"type": "string", "enum": ["stateful", "window"]},
            "defaults": {"type": "object"},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "origin": {"type": "string", "enum": ["directory", "upload"]},
            "description": {"type": "string"},
            "digest": {"type": "string", "description": "sha256 of the uploaded archive"},
            "size": {"type": "integer", "minimum": 0},
            "created_at": {"type": "string", "format": "date-time"},
        },
    }
    probability = _object({"char": {"type": "string"}, "probability": {"type": "number"}})
    return {
        "JobRequest": job_request.model_json_schema(ref_template=template),
        "PredictRequest": PredictRequest.model_json_schema(ref_template=template),
        "Job": _job_schema(),
        "JobList": _object(
            {
                "jobs": {"type": "array", "items": _ref("Job")},
                "next_cursor": {"type": ["string", "null"]},
            }
        ),
        "Usage": _object(
            {
                "key": {"type": "string", "description": "The API key's name, never the key."},
                "queued": {"type": "integer", "minimum": 0},
                "running_jobs": {"type": "integer", "minimum": 0},
                "running_samples": {"type": "integer", "minimum": 0},
                "limits": _object(
                    {
                        "max_queued": {"type": "integer", "minimum": 0},
                        "max_running_samples": {"type": "integer", "minimum": 0},
                        "submit_rate": {"type": "number", "minimum": 0},
                        "submit_burst": {"type": "integer", "minimum": 1},
                        "weight": {"type": "number", "exclusiveMinimum": 0},
                    }
                ),
            }
        ),
        "Model": model_schema,
        "ModelUpload": _upload_schema(named=True),
        "ModelReplacement": _upload_schema(named=False),
        "ModelList": _object({"models": {"type": "array", "items": _ref("Model")}}),
        "Prediction": _object(
            {
                "model": {"type": "string"},
                "seed": {"type": "string"},
                "temperature": {"type": "number"},
                "probabilities": {"type": "array", "items": probability},
            }
        ),
        "Generated": _object({"generated": {"type": "string"}}),
        "JobEvent": {
            "description": "One Server-Sent Event; `data` is JSON: {status} for `status` and "
            "`done`, {stream, text, done} for `output`.",
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "id": {"type": "string", "pattern": LAST_EVENT_ID.pattern},
                "event": {"type": "string", "enum": ["status", "output", "done"]},
                "data": {"type": "string", "contentMediaType": "application/json"},
                "retry": {"type": "integer"},
            },
        },
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": _object({"field": {"type": "string"}, "message": {"type": "string"}}),
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
        },
        "Ready": _object(
            {
                "status": {"type": "string"},
                "redis": {"type": "boolean"},
                "workers": {"type": "integer", "minimum": 0},
            }
        ),
    }


def _upload_schema(*, named: bool) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    properties: dict[str, Any] = {
        "file": {
            **binary,
            "description": "A .zip of a model folder (ml5, TensorFlow.js layers, "
            "lstm_model_creator's download, a Keras folder), or a .keras or .h5 file.",
        },
        "vocab": {**binary, "description": "The vocabulary of a .keras or .h5 file."},
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS},
    }
    required = ["file"]
    if named:
        properties = {"name": {"type": "string", "pattern": NAME_PATTERN.pattern}, **properties}
        required = ["name", "file"]
    return {"type": "object", "required": required, "properties": properties}


def _multipart(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"multipart/form-data": {"schema": _ref(schema)}}}


def _responses(ok: dict[int, dict[str, Any]], *codes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code, content in ok.items():
        responses[str(code)] = {"description": DESCRIPTIONS.get(code, "OK"), "content": content}
    for code in sorted(codes):
        responses[str(code)] = {
            "description": DESCRIPTIONS[code],
            "content": {PROBLEM: {"schema": _ref("Problem")}},
        }
    return responses


def _json(schema: str) -> dict[str, Any]:
    return {JSON: {"schema": _ref(schema)}}


def _job_created(schema: str) -> dict[int, dict[str, Any]]:
    return {200: _json(schema), 201: _json(schema)}


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _body(schema: str) -> dict[str, Any]:
    return {"required": False, "content": _json(schema)}


def _paths(settings: Settings) -> dict[str, Any]:
    auth = (401,) if settings.api_keys else ()
    job_id = _path("job_id", "The job's id.", {"type": "string", "pattern": JOB_ID_PATTERN})
    model = _path("name", "The model's name.")
    prefer = _header(
        "Prefer",
        "`wait=N`: hold the response up to N seconds (at most the configured limit) until the "
        "job ends; other preferences are ignored.",
        {"type": "string", "examples": ["wait=10"]},
    )
    create_codes = (*auth, 400, 413, 415, 422, 429, 503)
    upload_codes = (*auth, 409, 413, 415, 422, 503)
    jobs_ok = {200: _json("JobList")}
    return {
        "/v1/jobs": {
            "post": {
                "operationId": "createJob",
                "summary": "Create a generation job",
                "parameters": [
                    prefer,
                    _header(
                        "Idempotency-Key",
                        "A retried create with the same key returns the same job.",
                        {"type": "string", "minLength": 1, "maxLength": 255},
                    ),
                ],
                "requestBody": _body("JobRequest"),
                "responses": _responses(_job_created("Job"), *create_codes),
            },
            "get": {
                "operationId": "listJobs",
                "summary": "List your jobs, newest first",
                "parameters": [
                    {
                        **_query(
                            "status",
                            "Only jobs in these statuses (comma-separated).",
                            {"type": "array", "items": {"type": "string", "enum": STATUSES}},
                        ),
                        "style": "form",
                        "explode": False,
                    },
                    _query(
                        "limit",
                        "Jobs per page.",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    ),
                    _query("cursor", "`next_cursor` of the previous page.", {"type": "string"}),
                ],
                "responses": _responses(jobs_ok, *auth, 422, 503),
            },
        },
        "/v1/jobs/{job_id}": {
            "parameters": [job_id],
            "get": {
                "operationId": "getJob",
                "summary": "Get a job with its output so far",
                "responses": _responses({200: _json("Job")}, *auth, 404, 503),
            },
            "put": {
                "operationId": "putJob",
                "summary": "Create a job with your own id (idempotent)",
                "parameters": [prefer],
                "requestBody": _body("JobRequest"),
                "responses": _responses(_job_created("Job"), *create_codes, 409),
            },
        },
        "/v1/jobs/{job_id}/cancel": {
            "parameters": [job_id],
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel a job (a running one keeps its partial output)",
                "responses": _responses({200: _json("Job")}, *auth, 404, 503),
            },
        },
        "/v1/jobs/{job_id}/stream": {
            "parameters": [job_id],
            "get": {
                "operationId": "streamJob",
                "summary": "Server-Sent Events: `status`, `output` and `done`",
                "parameters": [
                    _header(
                        "Last-Event-ID",
                        "Resume after this event.",
                        {"type": "string", "pattern": LAST_EVENT_ID.pattern},
                    ),
                ],
                "responses": _responses(
                    {200: {"text/event-stream": {"schema": _ref("JobEvent")}}},
                    *auth,
                    404,
                    422,
                    503,
                ),
            },
        },
        "/v1/usage": {
            "get": {
                "operationId": "getUsage",
                "summary": "Your key's jobs queued and running, and its limits (0: none)",
                "responses": _responses({200: _json("Usage")}, *auth, 503),
            },
        },
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "List the models you may use with their properties",
                "responses": _responses({200: _json("ModelList")}, *auth, 503),
            },
            "post": {
                "operationId": "uploadModel",
                "summary": "Upload a model (yours alone); a name in use is 409",
                "requestBody": _multipart("ModelUpload"),
                "responses": _responses({201: _json("Model")}, *upload_codes),
            },
        },
        "/v1/models/{name}": {
            "parameters": [model],
            "get": {
                "operationId": "getModel",
                "summary": "Get a model's ml5-style properties",
                "responses": _responses({200: _json("Model")}, *auth, 404, 503),
            },
            "put": {
                "operationId": "putModel",
                "summary": "Upload a model under this name, or replace yours of this name",
                "requestBody": _multipart("ModelReplacement"),
                "responses": _responses({200: _json("Model"), 201: _json("Model")}, *upload_codes),
            },
            "delete": {
                "operationId": "deleteModel",
                "summary": "Delete your uploaded model (running jobs finish, new ones are refused)",
                "responses": {
                    "204": {"description": DESCRIPTIONS[204]},
                    **_responses({}, *auth, 404, 409, 503),
                },
            },
        },
        "/v1/models/{name}/predict": {
            "parameters": [model],
            "post": {
                "operationId": "predict",
                "summary": "Next-character distribution after a seed",
                "requestBody": _body("PredictRequest"),
                "responses": _responses(
                    {200: _json("Prediction")}, *auth, 400, 404, 413, 415, 422, 503, 504
                ),
            },
        },
        "/generate": {
            "get": {
                "operationId": "generateCompat",
                "summary": "Generate synchronously (the replaced Node server's route)",
                "parameters": [
                    _query(
                        "inputText",
                        "Seed text.",
                        {"type": "string", "maxLength": settings.max_seed_chars},
                    ),
                    _query("model", "Model name.", {"type": "string"}),
                    _query(
                        "outputLength",
                        "Characters to generate.",
                        {"type": "integer", "minimum": 1, "maximum": settings.max_length},
                    ),
                    _query(
                        "temperature",
                        "Sampling temperature.",
                        {"type": "number", "minimum": 0, "maximum": MAX_TEMPERATURE},
                    ),
                ],
                "responses": _responses({200: _json("Generated")}, *auth, 422, 429, 502, 503, 504),
            },
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "The API process is alive",
                "security": [],
                "responses": _responses({200: _json("Health")}),
            },
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "summary": "Redis answers and at least one worker is up",
                "security": [],
                "responses": _responses({200: _json("Ready")}, 503),
            },
        },
    }


def build_openapi(
    settings: Settings, job_request: type[BaseModel], models: list[str] | None = None
) -> dict[str, Any]:
    """Return the OpenAPI document of this API under these settings (and these models)."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "lstmgen",
            "version": "1",
            "description": "Generate text with character-level LSTM models: submit jobs, "
            "poll or stream them, cancel them. Errors are RFC 9457 problem+json.",
        },
        "servers": [{"url": "/"}],
        "paths": _paths(settings)
        | delivery_views.openapi_paths(bool(settings.api_keys))
        | trainings_views.openapi_paths(bool(settings.api_keys)),
        "webhooks": delivery_views.openapi_webhooks(),
        "components": {
            "schemas": _schemas(job_request)
            | delivery_views.openapi_schemas()
            | trainings_views.openapi_schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if settings.api_keys:
        document["security"] = [{"bearer": []}]
    if models:
        model = document["components"]["schemas"]["JobRequest"]["properties"]["model"]
        model["enum"] = models
        if model.get("default") not in models:
            del model["default"]  # the default model is missing: requests must name one
    return document
