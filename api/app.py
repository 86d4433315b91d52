"""The Flask app factory."""

from __future__ import annotations

import logging

from flask import Flask

from api import (
    compat_views,
    delivery_views,
    health_views,
    jobs_views,
    metrics_views,
    models_views,
    request_logs,
    trainings_views,
    usage_views,
    web_views,
)
from api.cors import init_cors
from api.problems import register_problem_handlers
from api.services import EXTENSION, Services
from shared.settings import Settings
from shared.webhooks.ssrf import warn_if_private_allowed

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Flask:
    """Return the API app for these settings."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    app.extensions[EXTENSION] = Services.build(settings)
    register_problem_handlers(app, settings.max_body_bytes)
    request_logs.init_app(app)
    for blueprint in (
        jobs_views.bp,
        delivery_views.bp,
        models_views.bp,
        health_views.bp,
        usage_views.bp,
        trainings_views.bp,
    ):
        app.register_blueprint(blueprint)
    app.register_blueprint(metrics_views.bp)
    app.register_blueprint(web_views.bp)
    compat_views.init_app(app)
    init_cors(app, settings)
    if settings.api_keys:
        log.info("API keys required (%d configured)", len(settings.api_keys))
    else:  # settings refuse to listen beyond localhost without keys
        log.info(
            "no API keys configured: anyone who can reach %s may call the API, so it "
            "listens on localhost only",
            settings.base_url,
        )
    warn_if_private_allowed(settings, log)
    return app
