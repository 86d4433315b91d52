"""Load any supported model format into an LSTMModel: `load_model(path)`."""

from __future__ import annotations

from pathlib import Path

from shared.engine.loaders.keras import find_keras_file, load_keras
from shared.engine.loaders.ml5 import load_ml5
from shared.engine.loaders.tfjs import find_topology, load_tfjs
from shared.engine.model import LSTMModel, ModelLoadError

__all__ = ["detect_format", "load_model"]


def detect_format(path: Path) -> str:
    """Say which loader reads a path: "ml5", "tfjs" or "keras"."""
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return "ml5"
        if find_keras_file(path) is not None:
            return "keras"
        if find_topology(path) is not None:
            return "tfjs"
        raise ModelLoadError(
            path, "not a model folder (no manifest.json, model.keras or tfjs JSON)"
        )
    if not path.exists():
        raise ModelLoadError(path, "no such file or folder")
    if path.suffix in (".keras", ".h5", ".hdf5"):
        return "keras"
    if path.suffix == ".json":
        return "tfjs"
    raise ModelLoadError(path, "unknown model file type (expected .keras, .h5 or a tfjs .json)")


def load_model(path: str | Path, name: str | None = None) -> LSTMModel:
    """Load the model at a folder or file path, whatever its format."""
    path = Path(path)
    kind = detect_format(path)
    if kind == "ml5":
        return load_ml5(path, name)
    if kind == "keras":
        return load_keras(path, name)
    return load_tfjs(path, name)
