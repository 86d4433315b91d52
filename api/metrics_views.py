"""`GET /metrics`: the Prometheus exposition of the whole service, read from Redis."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.services import Services, services
from shared.celery_app import MODELS_QUEUE, UPLOADED_QUEUE, WEBHOOK_QUEUE, generation_queue
from shared.jobs.tenants import key_names
from shared.metrics import RedisCollector

bp = Blueprint("metrics", __name__)
EXTENSION = "lstmgen.metrics"


def _registry() -> CollectorRegistry:
    # One registry per app, not prometheus_client's global one: the numbers are the whole
    # service's (from Redis), and one gunicorn worker's process metrics would mislead.
    registry = current_app.extensions.get(EXTENSION)
    if registry is None:
        found = services()
        client = found.store.client
        registry = CollectorRegistry(auto_describe=False)
        tenants = key_names(found.settings)
        registry.register(RedisCollector(lambda: client, lambda: _queues(found), lambda: tenants))
        current_app.extensions[EXTENSION] = registry
    return registry


def _queues(found: Services) -> list[str]:
    # The queues jobs can be sent to from here: one per model this API accepts, and webhooks.
    names = [generation_queue(name) for name in found.model_names()]
    return [*names, UPLOADED_QUEUE, MODELS_QUEUE, WEBHOOK_QUEUE]


@bp.get("/metrics")
def metrics() -> Response:
    """Return every metric in the Prometheus text format (no API key needed)."""
    return Response(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
