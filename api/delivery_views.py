"""`/v1/jobs/{id}/deliveries`: the webhook deliveries of a job, and sending one again."""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Blueprint, Response, jsonify

from api.auth import authenticate, current_owner
from api.problems import Problem, not_found
from api.services import services
from shared.jobs.records import JOB_ID_PATTERN, Job
from shared.webhooks.deliveries import DeliveryPendingError, DeliveryState, DeliveryStore
from shared.webhooks.events import WebhookEvent

bp = Blueprint("deliveries", __name__, url_prefix="/v1/jobs")
bp.before_request(authenticate)

DELIVERY_ID_PATTERN = r"^msg_[0-9a-f]{1,64}$"
_JOB_ID = re.compile(JOB_ID_PATTERN)
_DELIVERY_ID = re.compile(DELIVERY_ID_PATTERN)


def _store() -> DeliveryStore:
    jobs = services().store
    return DeliveryStore(jobs.client, jobs.ttls.final_s)


def _owned_job(job_id: str) -> Job:
    job = services().store.owned(job_id, current_owner()) if _JOB_ID.match(job_id) else None
    if job is None:
        raise not_found(f"job {job_id!r}")
    return job


@bp.get("/<job_id>/deliveries")
def list_deliveries(job_id: str) -> Response:
    """Return the job's webhook deliveries, oldest first, with every attempt."""
    job = _owned_job(job_id)
    deliveries = _store().for_job(job.id)
    return jsonify({"deliveries": [delivery.public() for delivery in deliveries]})


@bp.post("/<job_id>/deliveries/<delivery_id>/redeliver")
def redeliver(job_id: str, delivery_id: str) -> Response:
    """Send a finished delivery again (same `webhook-id`, a new round of attempts)."""
    job = _owned_job(job_id)
    if not _DELIVERY_ID.match(delivery_id):
        raise not_found(f"delivery {delivery_id!r}")
    try:
        delivery = _store().redeliver(job.id, delivery_id, time.time())
    except KeyError:
        raise not_found(f"delivery {delivery_id!r} of job {job.id!r}") from None
    except DeliveryPendingError:
        detail = f"delivery {delivery_id!r} is still pending; redeliver it once it has ended"
        raise Problem(409, "Conflict", detail, "delivery-pending") from None
    response = jsonify(delivery.public())
    response.status_code = 202
    return response


# --- OpenAPI fragments (merged into the document by api/openapi.py) ------------------------------


def _problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {"application/problem+json": {"schema": schema}}}


def _ok(description: str, schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def openapi_schemas() -> dict[str, Any]:
    """Return the schemas of deliveries and of the webhook body."""
    attempt = {
        "type": "object",
        "required": ["time", "status_code", "latency_ms", "error"],
        "properties": {
            "time": {"type": "string", "format": "date-time"},
            "status_code": {"type": ["integer", "null"]},
            "latency_ms": {"type": "number", "minimum": 0},
            "error": {"type": ["string", "null"]},
        },
    }
    delivery = {
        "type": "object",
        "required": ["id", "event", "url", "state", "created_at", "next_attempt_at", "attempts"],
        "properties": {
            "id": {"type": "string", "description": "The `webhook-id` header of every attempt."},
            "event": {"type": "string", "enum": [e.value for e in WebhookEvent]},
            "url": {"type": "string"},
            "state": {"type": "string", "enum": [s.value for s in DeliveryState]},
            "created_at": {"type": "string", "format": "date-time"},
            "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
            "redeliveries": {"type": "integer", "minimum": 0},
            "attempts": {"type": "array", "items": attempt},
        },
    }
    deliveries = {
        "type": "object",
        "required": ["deliveries"],
        "properties": {
            "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}
        },
    }
    event = {
        "allOf": [
            {"$ref": "#/components/schemas/Job"},
            {
                "type": "object",
                "required": ["event"],
                "properties": {
                    "event": {"type": "string", "enum": [e.value for e in WebhookEvent]}
                },
            },
        ]
    }
    return {"Delivery": delivery, "DeliveryList": deliveries, "WebhookEvent": event}


def openapi_paths(auth: bool) -> dict[str, Any]:
    """Return the path items of the deliveries routes."""
    job_id = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
    }
    delivery_id = {
        "name": "delivery_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": DELIVERY_ID_PATTERN},
    }
    errors = {
        "404": _problem("No such job or delivery (or not yours)"),
        "503": _problem("The job store (Redis) is unreachable"),
    }
    if auth:
        errors["401"] = _problem("Missing or unknown API key")
    return {
        "/v1/jobs/{job_id}/deliveries": {
            "parameters": [job_id],
            "get": {
                "operationId": "listDeliveries",
                "summary": "List a job's webhook deliveries with every attempt",
                "responses": {"200": _ok("OK", "DeliveryList"), **errors},
            },
        },
        "/v1/jobs/{job_id}/deliveries/{delivery_id}/redeliver": {
            "parameters": [job_id, delivery_id],
            "post": {
                "operationId": "redeliver",
                "summary": "Send a finished delivery again, with the same webhook-id",
                "responses": {
                    "202": _ok("Accepted: a new round of attempts is due now", "Delivery"),
                    "409": _problem("The delivery is still pending"),
                    **errors,
                },
            },
        },
    }


def openapi_webhooks() -> dict[str, Any]:
    """Return the OpenAPI `webhooks` entry: what a job's webhook URL receives."""
    header = {"required": True, "schema": {"type": "string"}}
    return {
        "jobEvent": {
            "post": {
                "summary": "A job event (start, output, completed), signed per Standard Webhooks",
                "parameters": [
                    {"name": "webhook-id", "in": "header", **header},
                    {"name": "webhook-timestamp", "in": "header", **header},
                    {"name": "webhook-signature", "in": "header", **header, "required": False},
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/WebhookEvent"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Any 2xx within the timeout is success; 410 stops deliveries"
                    }
                },
            }
        }
    }
