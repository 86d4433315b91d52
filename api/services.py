"""What the views use, built once per app: settings, job store, Celery, models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery
from flask import current_app
from pydantic import BaseModel

from api.directory_models import DirectoryModels
from api.problems import FieldError, Problem, invalid, not_found
from api.validation import job_request_model
from shared.catalog.catalog import ModelCatalog
from shared.catalog.records import ModelInfo
from shared.celery_app import make_celery
from shared.engine.model import ModelLoadError
from shared.jobs.lifecycle import Lifecycle, service_lifecycle
from shared.jobs.store import JobStore
from shared.settings import Settings
from shared.trainings.store import TrainingStore

EXTENSION = "lstmgen"
# What the API knows of a model: a model directory's model as loaded here, or the catalog's
# info of an upload (its weights stay on the workers).
KnownModel = ModelInfo  # a directory model or an upload: its description, never its weights


@dataclass
class Services:
    """The API's collaborators, shared by every request of one app."""

    settings: Settings
    store: JobStore
    celery: Celery
    models: DirectoryModels
    catalog: ModelCatalog
    job_request: type[BaseModel]
    lifecycle: Lifecycle  # told of the jobs that end here (canceled while queued)
    trainings: TrainingStore

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Create the collaborators from settings (connections open lazily)."""
        store = JobStore.from_settings(settings)
        return cls(
            settings=settings,
            store=store,
            celery=make_celery(settings),
            models=DirectoryModels(settings.model_dir),
            catalog=ModelCatalog.from_url(settings.redis_url, settings.redis_sentinel_master),
            job_request=job_request_model(settings),
            lifecycle=service_lifecycle(store, settings.base_url),
            trainings=TrainingStore.from_settings(settings),
        )

    def replicas_short(self) -> tuple[int, int] | None:
        """Wait for `redis_min_replicas` replicas to hold every write so far (what this
        request stored among them); None if they do, else (how many did, how many must)."""
        wanted = self.settings.redis_min_replicas
        if wanted == 0:
            return None
        held = self.store.replicated(wanted, self.settings.redis_replica_timeout_s)
        return None if held >= wanted else (held, wanted)

    def model_names(self) -> list[str]:
        """Return the names of the model directory's models (every key may use them)."""
        return list(self.models.names())

    def visible_names(self, owner: str) -> list[str]:
        """Return the names of the models `owner` may use: the directory's and its uploads."""
        uploads = [info.name for info in self.catalog.uploads_of(owner)]
        return sorted({*self.model_names(), *uploads})

    def resolve(self, name: str) -> str:
        """Return the model a requested name stands for (itself unless it is an alias)."""
        return self.settings.aliases.get(name, name)

    def load_model(self, name: str, *, owner: str, field: str | None = None) -> KnownModel:
        """Return the description of a model `owner` may use (aliases followed): a directory
        model or the owner's upload; unknown: 422 naming `field`, else 404."""
        name = self.resolve(name)
        if name in self.model_names():
            try:
                return self.models.info(name)
            except ModelLoadError as error:
                detail = f"model {name!r} could not be loaded: {error}"
                raise Problem(503, "Model unavailable", detail, "model-unavailable") from None
        uploaded = self.catalog.uploaded(name, owner)
        if uploaded is not None:
            return uploaded
        if field is None:
            raise not_found(f"model {name!r}")
        available = ", ".join(self.visible_names(owner)) or "none"
        raise invalid([FieldError(field, f"unknown model {name!r} (available: {available})")])

    def is_uploaded(self, name: str) -> bool:
        """Return whether jobs of a model (not an alias) go to the queue of uploaded models."""
        return name not in self.model_names()


def services() -> Services:
    """Return the services of the current app."""
    found: Any = current_app.extensions[EXTENSION]
    assert isinstance(found, Services)
    return found
