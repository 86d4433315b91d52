"""Liveness, readiness, the OpenAPI document and its docs page."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, jsonify, send_file

from api.openapi import build_openapi
from api.problems import Problem
from api.services import services
from shared import metrics

bp = Blueprint("health", __name__)

DOCS_PAGE = Path(__file__).resolve().parent / "static" / "docs.html"


@bp.get("/healthz")
def healthz() -> Response:
    """Say the API process is alive."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Say whether Redis answers and at least one generation worker is up."""
    client = services().store.client
    client.ping()  # unreachable Redis: the 503 handler answers
    workers = metrics.workers_up(client)
    if workers == 0:
        raise Problem(
            503,
            "Not ready",
            "no generation worker is up",
            "not-ready",
            extra={"redis": True, "workers": 0},
        )
    return jsonify({"status": "ready", "redis": True, "workers": workers})


@bp.get("/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI 3.1 document of this API."""
    found = services()
    return jsonify(build_openapi(found.settings, found.job_request, found.model_names()))


@bp.get("/docs")
def docs() -> Response:
    """Serve the page that renders the OpenAPI document (no external assets)."""
    return send_file(DOCS_PAGE, mimetype="text/html", max_age=0)
