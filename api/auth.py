"""API keys: `Authorization: Bearer <key>`; each key sees only its own jobs."""

from __future__ import annotations

import hmac

from flask import g, request

from api.problems import Problem
from api.services import services
from shared.jobs.tenants import owner_of, split_key


def authenticate() -> None:
    """Resolve the caller's owner id into `g.owner`, or answer 401 (a before-request hook)."""
    if request.method == "OPTIONS":
        return  # a CORS preflight carries no credentials; the request that follows does
    keys = services().settings.api_keys
    if not keys:
        g.owner = owner_of(None)
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and any(
        hmac.compare_digest(token, split_key(entry)[1]) for entry in keys
    ):
        g.owner = owner_of(token)
        return
    detail = "send a valid API key as `Authorization: Bearer <key>`"
    headers = {"WWW-Authenticate": 'Bearer realm="lstmgen"'}
    raise Problem(401, "Unauthorized", detail, "unauthorized", headers=headers)


def current_owner() -> str:
    """Return the owner id of the authenticated caller."""
    owner: str = g.owner
    return owner
