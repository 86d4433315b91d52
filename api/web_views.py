"""The web page at `/`: static files only; every action goes through the public API."""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("web", __name__, static_folder="static", static_url_path="/web")

# Everything comes from this origin: the page works offline and injected scripts cannot run.
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"


@bp.get("/lstmgen.js")
def client_module() -> Response:
    """Serve the JavaScript client (an ES module with ml5's charRNN surface)."""
    response = bp.send_static_file("lstmgen.js")
    response.headers["Content-Type"] = "text/javascript; charset=utf-8"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
def index() -> Response:
    """Serve the single-page UI."""
    response = bp.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = CSP
    return response
