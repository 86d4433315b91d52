"""Write small synthetic models in every supported layout, and a plain numpy reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.engine.model import LSTMModel

VOCAB = ["\n", " ", "a", "b", "c", "d", "e", ".", "é"]


def random_weights(
    rng: np.random.Generator, vocab: int, sizes: list[int], embedding: int | None
) -> dict[str, Any]:
    """Draw LSTM weights in TensorFlow's layout: kernels [in + H, 4H], biases [4H]."""
    inputs = embedding or vocab
    cells = []
    for units in sizes:
        cells.append(
            (
                rng.normal(0, 0.5, (inputs + units, 4 * units)).astype(np.float32),
                rng.normal(0, 0.3, 4 * units).astype(np.float32),
            )
        )
        inputs = units
    return {
        "embedding": None
        if embedding is None
        else rng.normal(0, 1, (vocab, embedding)).astype(np.float32),
        "cells": cells,
        "softmax_w": rng.normal(0, 1, (sizes[-1], vocab)).astype(np.float32),
        "softmax_b": rng.normal(0, 0.3, vocab).astype(np.float32),
    }


def write_ml5(
    folder: Path, weights: dict[str, Any], vocab: list[str], *, old_names: bool = False
) -> Path:
    """Write an ml5 checkpoint folder (manifest, raw variables, vocab.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    kernel, bias = ("weights", "biases") if old_names else ("kernel", "bias")
    variables: dict[str, np.ndarray] = {"Variable": np.array(0.002, np.float32)}
    if weights["embedding"] is not None:
        variables["embedding"] = weights["embedding"]
    for index, (k, b) in enumerate(weights["cells"]):
        prefix = f"rnnlm/multi_rnn_cell/cell_{index}/basic_lstm_cell"
        variables[f"{prefix}/{kernel}"] = k
        variables[f"{prefix}/{bias}"] = b
    variables["rnnlm/softmax_w"] = weights["softmax_w"]
    variables["rnnlm/softmax_b"] = weights["softmax_b"]
    manifest = {}
    for name, array in variables.items():
        filename = name.replace("/", "_")
        (folder / filename).write_bytes(array.astype("<f4").tobytes())
        manifest[name] = {"filename": filename, "shape": list(array.shape)}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "vocab.json").write_text(
        json.dumps({c: i for i, c in enumerate(vocab)}), encoding="utf-8"
    )
    return folder


def keras_layers(weights: dict[str, Any]) -> list[tuple[str, list[np.ndarray]]]:
    """Convert TF-layout cells to Keras LSTM weights (kernel, recurrent_kernel, bias)."""
    out = []
    for k, b in weights["cells"]:
        units = b.shape[0] // 4
        inputs = k.shape[0] - units
        i, j, f, o = np.split(k, 4, axis=1)
        bi, bj, bf, bo = np.split(b, 4)
        fused = np.concatenate([i, f, j, o], axis=1)
        out.append(
            (
                "lstm",
                [
                    fused[:inputs].copy(),
                    fused[inputs:].copy(),
                    np.concatenate([bi, bf, bj, bo]).astype(np.float32),
                ],
            )
        )
    return out


def write_tfjs(
    folder: Path,
    weights: dict[str, Any],
    vocab: list[str],
    *,
    window: int = 6,
    wrapped: bool = True,
    dict_config: bool = True,
    dense_first: bool = False,
    two_groups: bool = False,
    separate_softmax: bool = False,
    extra_layers: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a tfjs layers model (model.json + shards); the vocabulary is left to the caller."""
    folder.mkdir(parents=True, exist_ok=True)
    lstms = keras_layers(weights)
    layers: list[dict[str, Any]] = []
    named: list[tuple[str, list[tuple[str, np.ndarray]]]] = []
    for index, (_, arrays) in enumerate(lstms):
        name = f"lstm_{index + 1}"
        config: dict[str, Any] = {
            "name": name,
            "units": arrays[1].shape[0],
            "activation": "tanh",
            "recurrent_activation": "hard_sigmoid",
            "return_sequences": index < len(lstms) - 1,
        }
        if index == 0:
            config["batch_input_shape"] = [None, window, len(vocab)]
        layers.append({"class_name": "LSTM", "config": config})
        roles = ["kernel", "recurrent_kernel", "bias"]
        named.append((name, list(zip(roles, arrays, strict=True))))
    dense = {"name": "dense_1", "units": len(vocab)}
    dense["activation"] = "linear" if separate_softmax else "softmax"
    layers.append({"class_name": "Dense", "config": dense})
    if separate_softmax:
        layers.append(
            {"class_name": "Activation", "config": {"name": "act", "activation": "softmax"}}
        )
    layers.extend(extra_layers or [])
    named.append(("dense_1", [("kernel", weights["softmax_w"]), ("bias", weights["softmax_b"])]))
    if dense_first:
        named = [named[-1], *named[:-1]]
    groups = [named[:1], named[1:]] if two_groups else [named]
    manifest = []
    for number, group in enumerate(groups):
        shard = f"group{number + 1}-shard1of1"
        entries, blobs = [], []
        for layer_name, arrays in group:
            for role, array in arrays:
                entries.append(
                    {"name": f"{layer_name}/{role}", "shape": list(array.shape), "dtype": "float32"}
                )
                blobs.append(array.astype("<f4").tobytes())
        (folder / shard).write_bytes(b"".join(blobs))
        manifest.append({"paths": [shard], "weights": entries})
    config_value: Any = {"name": "seq", "layers": layers} if dict_config else layers
    topology: dict[str, Any] = {"class_name": "Sequential", "config": config_value}
    if wrapped:
        topology = {"keras_version": "2.1.5", "backend": "tensorflow", "model_config": topology}
    document = {"modelTopology": topology, "weightsManifest": manifest}
    (folder / "model.json").write_text(json.dumps(document), encoding="utf-8")
    return folder


def reference_probabilities(
    model: LSTMModel, ids: list[int], temperature: float = 1.0
) -> np.ndarray:
    """Compute the next-character distribution with plain float64 numpy, formula by formula."""

    def ra(x: np.ndarray) -> np.ndarray:
        if model.recurrent_activation == "hard_sigmoid":
            return np.clip(0.2 * x + 0.5, 0, 1)
        if model.recurrent_activation == "hard_sigmoid_k3":
            return np.clip(x / 6 + 0.5, 0, 1)
        return 1 / (1 + np.exp(-x))

    if model.window is not None:
        ids = ids[-model.window :]
    hs = [np.zeros(layer.units) for layer in model.layers]
    cs = [np.zeros(layer.units) for layer in model.layers]
    for char in ids:
        if model.embedding is not None:
            x = model.embedding[char].astype(np.float64)
        else:
            x = np.eye(model.vocab_size)[char]
        for index, layer in enumerate(model.layers):
            z = np.concatenate([x, hs[index]]) @ layer.kernel.astype(np.float64) + layer.bias
            i, f, g, o = np.split(z, 4)
            cs[index] = ra(f) * cs[index] + ra(i) * np.tanh(g)
            hs[index] = ra(o) * np.tanh(cs[index])
            x = hs[index]
    logits = hs[-1] @ model.output_kernel.astype(np.float64) + model.output_bias
    if temperature == 0:
        return np.eye(model.vocab_size)[int(np.argmax(logits))]
    scaled = logits / temperature
    e = np.exp(scaled - scaled.max())
    return e / e.sum()


def raw_reference(
    weights: dict[str, Any],
    ids: list[int],
    *,
    forget_bias: float,
    activation: str,
    window: int | None = None,
) -> np.ndarray:
    """Compute the distribution from TF-layout weights (gates i, j, f, o), as in FORMATS.md."""

    def ra(x: np.ndarray) -> np.ndarray:
        if activation == "hard_sigmoid":
            return np.clip(0.2 * x + 0.5, 0, 1)
        return 1 / (1 + np.exp(-x))

    if window is not None:
        ids = ids[-window:]
    vocab = weights["softmax_b"].shape[0]
    hs = [np.zeros(b.shape[0] // 4) for _, b in weights["cells"]]
    cs = [np.zeros(b.shape[0] // 4) for _, b in weights["cells"]]
    for char in ids:
        emb = weights["embedding"]
        x = np.eye(vocab)[char] if emb is None else emb[char].astype(np.float64)
        for index, (kernel, bias) in enumerate(weights["cells"]):
            z = np.concatenate([x, hs[index]]) @ kernel.astype(np.float64) + bias
            i, j, f, o = np.split(z, 4)
            cs[index] = ra(i) * np.tanh(j) + cs[index] * ra(f + forget_bias)
            hs[index] = np.tanh(cs[index]) * ra(o)
            x = hs[index]
    logits = hs[-1] @ weights["softmax_w"].astype(np.float64) + weights["softmax_b"]
    e = np.exp(logits - logits.max())
    return e / e.sum()
