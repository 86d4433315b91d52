"""What the views use, built once per app: settings, job store, Celery, models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery
from flask import current_app
from pydantic import BaseModel

from api.problems import FieldError, Problem, invalid, not_found
from api.validation import job_request_model
from shared.celery_app import make_celery
from shared.engine.model import LSTMModel, ModelLoadError
from shared.engine.registry import ModelRegistry
from shared.jobs.lifecycle import Lifecycle, service_lifecycle
from shared.jobs.store import JobStore
from shared.settings import Settings

EXTENSION = "lstmgen"


@dataclass
class Services:
    """The API's collaborators, shared by every request of one app."""

    settings: Settings
    store: JobStore
    celery: Celery
    models: ModelRegistry
    job_request: type[BaseModel]
    lifecycle: Lifecycle  # told of the jobs that end here (canceled while queued)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Create the collaborators from settings (connections open lazily)."""
        store = JobStore.from_settings(settings)
        return cls(
            settings=settings,
            store=store,
            celery=make_celery(settings),
            models=ModelRegistry(settings.model_dir),
            job_request=job_request_model(settings),
            lifecycle=service_lifecycle(store, settings.base_url),
        )

    def model_names(self) -> list[str]:
        """Return the names of the models the service can run."""
        return list(self.models.names())

    def resolve(self, name: str) -> str:
        """Return the model a requested name stands for (itself unless it is an alias)."""
        return self.settings.aliases.get(name, name)

    def load_model(self, name: str, *, field: str | None = None) -> LSTMModel:
        """Return a loaded model (aliases followed); unknown: 422 naming `field`, else 404."""
        name = self.resolve(name)
        if name not in self.model_names():
            if field is None:
                raise not_found(f"model {name!r}")
            available = ", ".join(self.model_names()) or "none"
            raise invalid([FieldError(field, f"unknown model {name!r} (available: {available})")])
        try:
            return self.models.get(name)
        except ModelLoadError as error:
            detail = f"model {name!r} could not be loaded: {error}"
            raise Problem(503, "Model unavailable", detail, "model-unavailable") from None


def services() -> Services:
    """Return the services of the current app."""
    found: Any = current_app.extensions[EXTENSION]
    assert isinstance(found, Services)
    return found
