"""What the API knows of the model directory's models: names and descriptions, never weights.

Each model is read once (again when its files change) and only its `ModelInfo` (vocabulary,
defaults, properties) is kept. Generation and predictions run on the workers, which hold the
weights and the compiled kernels.
"""

from __future__ import annotations

import threading
from pathlib import Path

from shared.catalog.records import ModelInfo, ModelSource
from shared.engine.loaders import load_model
from shared.engine.registry import ModelRegistry, model_stamp


class DirectoryModels:
    """Descriptions of the models of one directory."""

    def __init__(self, model_dir: Path) -> None:
        self._models = ModelRegistry(model_dir)
        self._cache: dict[str, tuple[float, ModelInfo]] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def names(self) -> list[str]:
        """List the model names."""
        return self._models.names()

    def info(self, name: str) -> ModelInfo:
        """Return a model's description (UnknownModelError, ModelLoadError).

        One thread reads a model while the others asking for it wait for its description: the
        first requests after a start arrive together, and each would read the whole model.
        """
        path = self._models.path(name)
        stamp = model_stamp(path)
        found = self._cached(name, stamp)
        if found is not None:
            return found
        with self._lock:
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:
            found = self._cached(name, stamp)
            if found is None:
                properties = load_model(path, name=name).properties()  # the weights are dropped
                found = ModelInfo.from_properties(properties, source=ModelSource.DIRECTORY)
                with self._lock:
                    self._cache[name] = (stamp, found)
        return found

    def _cached(self, name: str, stamp: float) -> ModelInfo | None:
        with self._lock:
            cached = self._cache.get(name)
        return cached[1] if cached is not None and cached[0] == stamp else None
