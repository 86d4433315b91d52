"""Named models in the model directory: list them, resolve names and paths, cache loads."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from shared.engine.loaders import load_model
from shared.engine.model import LSTMModel
from shared.settings import Settings

MODEL_SUFFIXES = (".keras", ".h5")
# Names are folder or file names inside the model directory, never paths.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class UnknownModelError(LookupError):
    """No model of that name in the model directory."""

    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = available
        listed = ", ".join(available) if available else "none"
        super().__init__(f"unknown model {name!r} (available: {listed})")


class ModelRegistry:
    """The models of one directory, loaded on first use and kept in memory."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self._cache: dict[str, tuple[float, LSTMModel]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """Build the registry for settings.model_dir."""
        return cls(settings.model_dir)

    def names(self) -> list[str]:
        """List the model names: sub-folders and .keras/.h5 files of the model directory."""
        if not self.model_dir.is_dir():
            return []
        found = set()
        for entry in self.model_dir.iterdir():
            if entry.name.startswith(".") or not NAME_PATTERN.match(entry.name):
                continue
            if entry.is_dir() and any(entry.iterdir()):
                found.add(entry.name)
            elif entry.is_file() and entry.suffix in MODEL_SUFFIXES:
                found.add(entry.stem)
        return sorted(found)

    def path(self, name: str) -> Path:
        """Return the folder or file of a named model."""
        if NAME_PATTERN.match(name):
            folder = self.model_dir / name
            if folder.is_dir():
                return folder
            for suffix in MODEL_SUFFIXES:
                candidate = self.model_dir / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
        raise UnknownModelError(name, self.names())

    def resolve(self, name_or_path: str | Path) -> tuple[str, Path]:
        """Resolve a model name, or an existing path, to (name, path)."""
        text = str(name_or_path)
        if NAME_PATTERN.match(text) and (self.model_dir / text).exists():
            return text, self.path(text)
        candidate = Path(name_or_path)
        if candidate.exists():
            resolved = candidate.resolve()
            name = resolved.stem if resolved.is_file() else resolved.name
            return name, resolved
        return text, self.path(text)

    def get(self, name: str) -> LSTMModel:
        """Return a named model of the directory, loaded once (again if its files changed)."""
        return self._cached(name, self.path(name))

    def load(self, name_or_path: str | Path) -> LSTMModel:
        """Return the model at a path or of that name (for local tools, not for requests)."""
        return self._cached(*self.resolve(name_or_path))

    def _cached(self, name: str, path: Path) -> LSTMModel:
        key = str(path)
        stamp = model_stamp(path)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        model = load_model(path, name=name)
        with self._lock:
            self._cache[key] = (stamp, model)
        return model


def model_stamp(path: Path) -> float:
    """Return the newest modification time among a model's files."""
    if path.is_file():
        return path.stat().st_mtime
    return max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)
