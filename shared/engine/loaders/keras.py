"""Load Keras models (Keras 3 `.keras` zips and legacy `.h5`) with zipfile + h5py only."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.engine.loaders.layers import WEIGHT_ROLES, LayerConfig, build_model, sequential_layers
from shared.engine.loaders.vocab import find_vocab_file, read_vocab_file
from shared.engine.model import Array, LSTMModel, ModelLoadError

if TYPE_CHECKING:
    import h5py

MODEL_FILES = ("model.keras", "model.h5")


def find_keras_file(folder: Path) -> Path | None:
    """Return the Keras model file of a model folder, if it has one."""
    for name in MODEL_FILES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted([*folder.glob("*.keras"), *folder.glob("*.h5")])
    return candidates[0] if len(candidates) == 1 else None


def load_keras(path: Path, name: str | None = None, vocab_path: Path | None = None) -> LSTMModel:
    """Load a project model folder, or a bare `.keras`/`.h5` file with a vocabulary beside it."""
    model_file = find_keras_file(path) if path.is_dir() else path
    if model_file is None:
        raise ModelLoadError(path, "no model.keras or model.h5 in this folder")
    if not model_file.is_file():
        raise ModelLoadError(model_file, "model file not found")
    if model_file.suffix == ".keras":
        config, weights, version = _read_keras_zip(model_file)
    else:
        config, weights, version = _read_h5(model_file)
    vocab_file = vocab_path or find_vocab_file(model_file.parent)
    if vocab_file is None:
        raise ModelLoadError(model_file.parent, "no vocabulary (vocab.json) next to the model")
    vocab, warnings = read_vocab_file(vocab_file)
    metadata: dict[str, Any] = {"keras_version": version, "vocab_file": vocab_file.name}
    training = model_file.parent / "training.json"
    defaults: dict[str, Any] = {}
    if training.is_file():
        metadata["training"] = _read_training(training)
        defaults = _defaults(metadata["training"], training)
    default_name = path.name if path.is_dir() else model_file.stem
    return build_model(
        sequential_layers(config, model_file),
        weights,
        vocab,
        path=model_file,
        name=name or default_name,
        format="keras",
        keras3=version.startswith("3"),
        warnings=warnings,
        metadata=metadata,
        defaults=defaults,
    )


def _defaults(training: Any, path: Path) -> dict[str, Any]:
    """Return the generation defaults training.json sets (seed, length, temperature), if any."""
    found = training.get("defaults") if isinstance(training, dict) else None
    if found is None:
        return {}
    kinds: dict[str, type | tuple[type, ...]] = {
        "seed": str,
        "length": int,
        "temperature": (int, float),
    }
    if not isinstance(found, dict) or any(
        key not in kinds or not isinstance(value, kinds[key]) for key, value in found.items()
    ):
        raise ModelLoadError(path, "'defaults' must hold seed (text), length and temperature")
    return dict(found)


def _read_training(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(path, f"not valid JSON: {error}") from None


def _read_keras_zip(path: Path) -> tuple[Any, dict[str, list[Array]], str]:
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            metadata = json.loads(archive.read("metadata.json"))
            weights_blob = archive.read("model.weights.h5")
    except FileNotFoundError:
        raise ModelLoadError(path, "model file not found") from None
    except KeyError as error:
        raise ModelLoadError(path, f"the .keras archive lacks {error.args[0]}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise ModelLoadError(path, f"not a readable .keras archive: {error}") from None
    layers = sequential_layers(config, path)
    import h5py  # here, not at import: only Keras files need it (12 MB)

    try:
        with h5py.File(io.BytesIO(weights_blob), "r") as handle:
            weights = _keras3_weights(handle, layers, path)
    except OSError as error:
        raise ModelLoadError(path, f"model.weights.h5 is unreadable: {error}") from None
    return config, weights, str(metadata.get("keras_version", "3"))


def _keras3_weights(
    handle: h5py.File, layers: list[LayerConfig], path: Path
) -> dict[str, list[Array]]:
    """Bind Keras 3 weight groups (layers/<path>/[cell/]vars/N) to config names."""
    if "layers" not in handle:
        raise ModelLoadError(path, "model.weights.h5 has no 'layers' group")
    by_name: dict[str, list[Array]] = {}
    for group_name, group in handle["layers"].items():
        holder = group.get("cell", group)
        if "vars" not in holder:
            continue
        vars_group = holder["vars"]
        owner = group["vars"].attrs.get("name", group_name) if "vars" in group else group_name
        arrays = [_array(vars_group[key], path) for key in sorted(vars_group, key=int)]
        if arrays:
            by_name[str(owner)] = arrays
    missing = [
        layer.name for layer in layers if layer.kind in WEIGHT_ROLES and layer.name not in by_name
    ]
    if missing:
        raise ModelLoadError(path, f"no weights for layers {missing}")
    return by_name


def _read_h5(path: Path) -> tuple[Any, dict[str, list[Array]], str]:
    import h5py  # here, not at import: only Keras files need it

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
            if raw is None:
                raise ModelLoadError(path, "no model_config attribute (a weights-only file?)")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            version = _text(handle.attrs.get("keras_version", "2"))
            root = handle.get("model_weights", handle)
            weights = {
                name: [_array(root[name][_text(w)], path) for w in root[name].attrs["weight_names"]]
                for name in root
                if "weight_names" in root[name].attrs
            }
    except FileNotFoundError:
        raise ModelLoadError(path, "model file not found") from None
    except (OSError, KeyError, ValueError) as error:
        raise ModelLoadError(path, f"not a readable Keras HDF5 model: {error}") from None
    return config, weights, version


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _array(dataset: Any, path: Path) -> Array:
    try:
        return np.asarray(dataset[()], dtype=np.float32)
    except (OSError, ValueError, TypeError) as error:
        raise ModelLoadError(path, f"weight {dataset.name} is unreadable: {error}") from None
