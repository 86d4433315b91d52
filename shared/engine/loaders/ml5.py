"""Load ml5 / p5-deeplearn-js checkpoints: manifest.json, raw float32 variables, vocab.json."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from shared.engine.loaders.files import read_json_object
from shared.engine.loaders.vocab import read_vocab_file
from shared.engine.model import (
    Array,
    Defaults,
    LSTMLayer,
    LSTMModel,
    Mode,
    ModelLoadError,
    default_seed,
    vocab_warnings,
)

# TensorFlow's BasicLSTMCell adds this to the forget gate at every step.
FORGET_BIAS = 1.0
_CELL = re.compile(r"(?:cell_(\d+)/)?(?:basic_)?lstm_cell/(kernel|weights|bias|biases)$")


def load_ml5(folder: Path, name: str | None = None) -> LSTMModel:
    """Load an ml5 charRNN checkpoint folder."""
    manifest_path = folder / "manifest.json"
    manifest = _read_manifest(manifest_path)
    variables = {key: _read_variable(folder, key, entry) for key, entry in manifest.items()}
    vocab, warnings = read_vocab_file(folder / "vocab.json")
    warnings += vocab_warnings(vocab)
    layers = _layers(variables, manifest_path)
    try:
        output_kernel = variables.pop("rnnlm/softmax_w")
        output_bias = variables.pop("rnnlm/softmax_b")
    except KeyError as error:
        raise ModelLoadError(manifest_path, f"variable {error.args[0]} is missing") from None
    try:
        return LSTMModel(
            name=name or folder.name,
            format="ml5",
            source=folder,
            vocab=vocab,
            embedding=variables.get("embedding"),
            layers=layers,
            recurrent_activation="sigmoid",
            output_kernel=output_kernel,
            output_bias=output_bias,
            mode=Mode.STATEFUL,
            defaults=Defaults(seed=default_seed(vocab)),
            warnings=tuple(warnings),
            metadata={"variables": sorted(manifest)},
        )
    except ValueError as error:
        raise ModelLoadError(folder, f"weights do not fit together: {error}") from None


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    manifest = read_json_object(path, "manifest.json")
    for key, entry in manifest.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("filename"), str)):
            raise ModelLoadError(path, f"variable {key!r} has no filename")
        shape = entry.get("shape")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ModelLoadError(path, f"variable {key!r} has no valid shape")
    return manifest


def _read_variable(folder: Path, key: str, entry: dict[str, Any]) -> Array:
    path = folder / entry["filename"]
    shape = tuple(entry["shape"])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(path, f"weight file for {key!r} not found") from None
    expected = 4 * int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "too long"
        raise ModelLoadError(
            path,
            f"{problem}: {len(data)} bytes, but the manifest.json shape {list(shape)} "
            f"needs {expected}",
        )
    return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(shape)


def _layers(variables: dict[str, Array], manifest_path: Path) -> tuple[LSTMLayer, ...]:
    found: dict[int, dict[str, Array]] = {}
    for key in list(variables):
        match = _CELL.search(key)
        if match:
            role = "kernel" if match.group(2) in ("kernel", "weights") else "bias"
            found.setdefault(int(match.group(1) or 0), {})[role] = variables.pop(key)
    if not found or sorted(found) != list(range(len(found))):
        raise ModelLoadError(manifest_path, "no LSTM cells numbered 0..N-1 in the manifest")
    layers = []
    for index in range(len(found)):
        parts = found[index]
        if set(parts) != {"kernel", "bias"}:
            raise ModelLoadError(manifest_path, f"cell_{index} needs both a kernel and a bias")
        layers.append(_keras_order(parts["kernel"], parts["bias"], manifest_path, index))
    return tuple(layers)


def _keras_order(kernel: Array, bias: Array, path: Path, index: int) -> LSTMLayer:
    """Reorder TensorFlow's gates (i, j, f, o) to Keras's (i, f, c, o), folding the forget bias."""
    if kernel.ndim != 2 or kernel.shape[1] % 4 or bias.shape != (kernel.shape[1],):
        raise ModelLoadError(
            path, f"cell_{index}: kernel {list(kernel.shape)} and bias {list(bias.shape)} differ"
        )
    i, j, f, o = np.split(kernel, 4, axis=1)
    bi, bj, bf, bo = np.split(bias, 4)
    try:
        return LSTMLayer(
            kernel=np.concatenate([i, f, j, o], axis=1),
            bias=np.concatenate([bi, bf + np.float32(FORGET_BIAS), bj, bo]),
        )
    except ValueError as error:
        raise ModelLoadError(path, f"cell_{index}: {error}") from None
