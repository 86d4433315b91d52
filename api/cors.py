"""CORS: which other origins' pages (a p5.js sketch, say) may call the API from a browser.

`LSTMGEN_CORS_ORIGINS` lists exact origins, or `*` for any origin without credentials (the API
authenticates with a bearer key, never with cookies). Preflights are answered for the headers
the API reads. The JavaScript client itself (`/lstmgen.js`) may be imported from anywhere.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask_cors import CORS

from shared.settings import Settings

ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "Prefer"]
EXPOSED_HEADERS = ["Location", "Preference-Applied", "Retry-After"]
CLIENT_PATH = "/lstmgen.js"
MAX_AGE_S = 600  # how long a browser may reuse a preflight answer


def init_cors(app: Flask, settings: Settings) -> None:
    """Answer cross-origin requests from the configured origins (and anyone for the client)."""
    origins = settings.cors_origins
    resources: dict[str | re.Pattern[str], dict[str, Any]] = {CLIENT_PATH: {"origins": "*"}}
    if origins:
        resources["/*"] = {"origins": "*" if "*" in origins else origins}
    CORS(
        app,
        resources=resources,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        supports_credentials=False,
        send_wildcard="*" in origins or not origins,
        max_age=MAX_AGE_S,
        vary_header=True,
    )
