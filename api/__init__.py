"""The HTTP API: `api.app.create_app(settings)`; `api.wsgi:app` for gunicorn."""
