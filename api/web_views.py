"""The web page at `/`: static files only; every action goes through the public API."""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("web", __name__, static_folder="static", static_url_path="/web")

# Everything comes from this origin: the page works offline and injected scripts cannot run.
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"


@bp.get("/")
def index() -> Response:
    """Serve the single-page UI."""
    response = bp.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = CSP
    return response
