"""WSGI entry point: `gunicorn -c api/gunicorn_conf.py api.wsgi:app`."""

from __future__ import annotations

from api.app import create_app
from shared.settings import get_settings

app = create_app(get_settings())
