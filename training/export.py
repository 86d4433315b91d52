"""Write any loadable model as a TensorFlow.js layers model or in the project's Keras format."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shared.engine.batch import next_probabilities
from shared.engine.loaders import load_model
from shared.engine.model import Array, LSTMModel, Mode
from training.convert import TFJS_ACTIVATIONS, lstm_weights, rescale_note
from training.errors import TrainingError
from training.modelio import check_writable, write_json

ExportFormat = Literal["tfjs", "keras"]
FORMATS: tuple[ExportFormat, ...] = ("tfjs", "keras")
TFJS_MODEL = "model.json"
TFJS_CHARSET = "charset.json"
SHARD_BYTES = 4 * 1024 * 1024  # tfjs's own shard size: keeps each file cache-friendly
PROBE_CHARS = 24  # seed length used to check that the written model predicts the same


def export_model(source: Path, fmt: ExportFormat, out_dir: Path) -> tuple[list[str], float]:
    """Convert a model; return notes about the conversion and the largest probability change."""
    model = load_model(source)
    if out_dir.resolve() == (source if source.is_dir() else source.parent).resolve():
        raise TrainingError(out_dir, "is the source model's own folder; choose another")
    check_writable(out_dir)
    if fmt == "tfjs":
        notes = write_tfjs(model, out_dir)
    elif fmt == "keras":
        notes = write_keras(model, out_dir)
    else:
        raise TrainingError(out_dir, f"unknown export format {fmt!r} (expected tfjs or keras)")
    return notes, probability_change(model, load_model(out_dir))


def probability_change(before: LSTMModel, after: LSTMModel) -> float:
    """Return the largest difference between the two models' next-character distributions."""
    usable = [i for i, char in enumerate(before.vocab) if len(char) == 1]
    probe = [usable[(7 * k) % len(usable)] for k in range(PROBE_CHARS)]
    worst = 0.0
    for end in (1, len(probe)):
        diff = next_probabilities(before, probe[:end]) - next_probabilities(after, probe[:end])
        worst = max(worst, float(np.max(np.abs(diff))))
    return worst


def write_keras(model: LSTMModel, out_dir: Path) -> list[str]:
    """Write the project's model folder (model.keras, vocab.json, training.json)."""
    from training.backend import keras
    from training.modelio import save_project_model
    from training.network import network_from_model

    network, notes = network_from_model(model)
    record = {
        "format_version": 1,
        "mode": str(model.mode),
        "window": model.window,
        "vocab_size": model.vocab_size,
        "exported_from": _origin(model),
        "notes": notes,
        "versions": {"python": platform.python_version(), "keras": keras.__version__},
    }
    save_project_model(out_dir, network, model.vocab, record)
    return notes


def write_tfjs(model: LSTMModel, out_dir: Path) -> list[str]:
    """Write model.json (topology + weights manifest), weight shards and charset.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    activation, scale = TFJS_ACTIVATIONS[model.recurrent_activation]
    named = _tfjs_weights(model, scale)
    blob = b"".join(array.astype("<f4").tobytes() for _, array in named)
    count = max(1, math.ceil(len(blob) / SHARD_BYTES))
    paths = [f"group1-shard{i + 1}of{count}.bin" for i in range(count)]
    for index, name in enumerate(paths):
        (out_dir / name).write_bytes(blob[index * SHARD_BYTES : (index + 1) * SHARD_BYTES])
    notes = [] if scale == 1.0 else [rescale_note(model.recurrent_activation, activation, scale)]
    document = {
        "format": "layers-model",
        "generatedBy": "lstmgen",
        "convertedBy": None,
        "modelTopology": _tfjs_topology(model, activation),
        "weightsManifest": [
            {
                "paths": paths,
                "weights": [
                    {"name": name, "shape": list(array.shape), "dtype": "float32"}
                    for name, array in named
                ],
            }
        ],
        "userDefinedMetadata": {"lstmgen": {"exported_from": _origin(model), "notes": notes}},
    }
    (out_dir / TFJS_MODEL).write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    write_json(out_dir / TFJS_CHARSET, list(model.vocab))
    return notes


def _origin(model: LSTMModel) -> dict[str, Any]:
    return {"name": model.name, "format": model.format, "path": str(model.source)}


def _tfjs_weights(model: LSTMModel, scale: float) -> list[tuple[str, Array]]:
    named: list[tuple[str, Array]] = []
    if model.embedding is not None:
        named.append(("embedding/embeddings", model.embedding))
    for index, layer in enumerate(model.layers):
        kernel, recurrent, bias = lstm_weights(layer, scale)
        prefix = f"lstm_{index + 1}"
        named += [(f"{prefix}/kernel", kernel), (f"{prefix}/recurrent_kernel", recurrent)]
        named.append((f"{prefix}/bias", bias))
    named += [("output/kernel", model.output_kernel), ("output/bias", model.output_bias)]
    return named


def _tfjs_topology(model: LSTMModel, activation: str) -> dict[str, Any]:
    length = model.window if model.mode is Mode.WINDOW else None
    layers: list[dict[str, Any]] = []
    if model.embedding is not None:
        layers.append(_layer("Embedding", "embedding", _embedding_config(model, length)))
    for index, layer in enumerate(model.layers):
        last = index == len(model.layers) - 1
        config = _lstm_config(layer.units, activation, model.mode is Mode.STATEFUL or not last)
        layers.append(_layer("LSTM", f"lstm_{index + 1}", config))
    layers.append(_layer("Dense", "output", _dense_config(model.vocab_size)))
    first = layers[0]["config"]
    first["batch_input_shape"] = [None, length] + (
        [] if model.embedding is not None else [model.vocab_size]
    )
    first["dtype"] = "float32"
    return {
        "class_name": "Sequential",
        "config": {"name": "lstmgen", "layers": layers},
        "keras_version": "tfjs-layers 4.22.0",
        "backend": "tensor_flow.js",
    }


def _layer(kind: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"class_name": kind, "config": {"name": name, "trainable": True, **config}}


def _initializer(kind: str, **config: Any) -> dict[str, Any]:
    return {"class_name": kind, "config": config}


GLOROT = _initializer("VarianceScaling", scale=1, mode="fan_avg", distribution="uniform", seed=None)
NO_REGULARISERS = {
    "kernel_regularizer": None,
    "bias_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "bias_constraint": None,
}


def _embedding_config(model: LSTMModel, length: int | None) -> dict[str, Any]:
    assert model.embedding is not None
    return {
        "input_dim": model.vocab_size,
        "output_dim": int(model.embedding.shape[1]),
        "embeddings_initializer": _initializer(
            "RandomUniform", minval=-0.05, maxval=0.05, seed=None
        ),
        "embeddings_regularizer": None,
        "activity_regularizer": None,
        "embeddings_constraint": None,
        "mask_zero": False,
        "input_length": length,
    }


def _lstm_config(units: int, activation: str, sequences: bool) -> dict[str, Any]:
    return {
        "units": units,
        "activation": "tanh",
        "recurrent_activation": activation,
        "use_bias": True,
        "kernel_initializer": GLOROT,
        "recurrent_initializer": _initializer("Orthogonal", gain=1, seed=None),
        "bias_initializer": _initializer("Zeros"),
        "unit_forget_bias": True,
        **NO_REGULARISERS,
        "recurrent_regularizer": None,
        "recurrent_constraint": None,
        "dropout": 0,
        "recurrent_dropout": 0,
        "implementation": 2,
        "return_sequences": sequences,
        "return_state": False,
        "go_backwards": False,
        "stateful": False,
        "unroll": False,
    }


def _dense_config(units: int) -> dict[str, Any]:
    return {
        "units": units,
        "activation": "softmax",
        "use_bias": True,
        "kernel_initializer": GLOROT,
        "bias_initializer": _initializer("Zeros"),
        **NO_REGULARISERS,
    }
