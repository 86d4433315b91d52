"""The models a worker runs: the model directory's, and uploaded ones, fetched from Redis once
per digest into a disk cache and loaded on first use."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from shared.catalog.archive import ArchiveLimits, unpack
from shared.catalog.catalog import ModelCatalog
from shared.catalog.records import ModelInfo, ModelSource
from shared.engine.loaders import load_model
from shared.engine.model import LSTMModel, ModelLoadError
from shared.engine.registry import ModelRegistry

log = logging.getLogger(__name__)

DIRECTORY_VERSION = ""  # the version of a model directory's model (its files say the rest)


class WorkerModels:
    """Resolve a model name to its current version and load that version once."""

    def __init__(
        self,
        registry: ModelRegistry,
        catalog: ModelCatalog,
        cache_dir: Path,
        limits: ArchiveLimits,
    ) -> None:
        self.registry = registry
        self.catalog = catalog
        self.cache_dir = Path(cache_dir)
        self.limits = limits
        self._loaded: dict[str, LSTMModel] = {}
        self._lock = threading.Lock()

    def version(self, name: str) -> str | None:
        """Return the version of a model: "" for the model directory's, an uploaded model's
        digest, or None if there is no such model (an upload deleted meanwhile)."""
        if name in self.registry.names():
            return DIRECTORY_VERSION
        info = self.catalog.get(name)
        if info is None or info.source is not ModelSource.UPLOAD:
            return None
        return info.digest

    def uploaded(self, name: str) -> bool:
        """Return whether jobs of `name` go to the queue of uploaded models."""
        return name not in self.registry.names()

    def get(self, name: str, version: str | None) -> LSTMModel:
        """Load a version of a model (see `version`), once per digest for uploaded ones."""
        if version == DIRECTORY_VERSION:
            return self.registry.get(name)
        if version is None:
            raise ModelLoadError(name, "no such model (it was deleted)")
        with self._lock:
            cached = self._loaded.get(version)
        if cached is not None and cached.name == name:
            return cached
        model = load_model(self._folder(version), name=name)
        with self._lock:
            self._loaded[version] = model
        return model

    def forget(self, digest: str) -> None:
        """Drop a loaded upload from memory (its files stay in the disk cache)."""
        with self._lock:
            self._loaded.pop(digest, None)

    def publish_directory(self, names: list[str]) -> None:
        """Record the info of these model directory models in the catalog (API lookups)."""
        for name in names:
            model = self.registry.get(name)
            if not self.catalog.publish_directory(ModelInfo.from_properties(model.properties())):
                log.warning("model %s of the model directory has the name of an upload", name)

    def _folder(self, digest: str) -> Path:
        """Return the unpacked folder of an uploaded archive, fetching it once per digest."""
        folder = self.cache_dir / digest
        if folder.is_dir():
            return folder
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self.cache_dir))
        try:
            archive = work / "archive.zip"
            with archive.open("w+b") as handle:
                if not self.catalog.read_blob(digest, handle):
                    raise ModelLoadError(digest, "the model's files are gone (it was deleted)")
                handle.seek(0)
                unpack(handle, work / "files", self.limits)
            with contextlib.suppress(OSError):  # another thread or process was first
                os.rename(work / "files", folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return folder
