"""`GET /v1/usage`: what the caller's API key has queued and running, and its limits."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.auth import authenticate, current_owner
from api.services import services
from shared.jobs.tenants import label, limits_for

bp = Blueprint("usage", __name__, url_prefix="/v1/usage")
bp.before_request(authenticate)


@bp.get("")
def usage() -> Response:
    """Return the caller's jobs queued and running, samples running, and its key's limits."""
    found = services()
    owner = current_owner()
    queued, running_jobs, running_samples = found.store.usage(owner)
    return jsonify(
        {
            "key": label(found.settings, owner),
            "queued": queued,
            "running_jobs": running_jobs,
            "running_samples": running_samples,
            "limits": limits_for(found.settings, owner).to_json(),
        }
    )
