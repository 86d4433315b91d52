"""Load TensorFlow.js layers models: a *.json topology + weightsManifest, shards, a charset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.engine.loaders.files import read_json_object
from shared.engine.loaders.layers import WEIGHT_ROLES, build_model, sequential_layers
from shared.engine.loaders.vocab import find_vocab_file, read_vocab_file
from shared.engine.model import Array, LSTMModel, ModelLoadError


def find_topology(folder: Path) -> Path | None:
    """Return the tfjs model JSON in a folder (any *.json holding a modelTopology)."""
    for candidate in sorted(folder.glob("*.json")):
        try:
            with candidate.open(encoding="utf-8") as handle:
                head = handle.read(4096)
        except (OSError, UnicodeDecodeError):
            continue
        if '"modelTopology"' in head or '"weightsManifest"' in head:
            return candidate
    return None


def load_tfjs(path: Path, name: str | None = None, vocab_path: Path | None = None) -> LSTMModel:
    """Load a tfjs layers model from its folder or its model JSON."""
    model_json = find_topology(path) if path.is_dir() else path
    if model_json is None:
        raise ModelLoadError(path, "no *.json with a modelTopology in this folder")
    document = read_json_object(model_json, "model JSON")
    topology = document.get("modelTopology")
    if topology is None:
        raise ModelLoadError(model_json, "no 'modelTopology' in the model JSON")
    layers = sequential_layers(topology, model_json)
    weights = _read_weights(document.get("weightsManifest"), model_json)
    vocab_file = vocab_path or find_vocab_file(model_json.parent)
    if vocab_file is None:
        raise ModelLoadError(
            model_json.parent,
            "no vocabulary next to the model (charset.json, *-charset.txt, char_indices.js, ...)",
        )
    vocab, warnings = read_vocab_file(vocab_file)
    version = str(topology.get("keras_version", ""))
    return build_model(
        layers,
        _by_layer(weights, model_json),
        vocab,
        path=model_json,
        name=name or (path.name if path.is_dir() else model_json.stem),
        format="tfjs",
        keras3=version.startswith("3"),
        warnings=warnings,
        metadata={"keras_version": version, "vocab_file": vocab_file.name},
    )


def _read_weights(manifest: Any, model_json: Path) -> dict[str, Array]:
    if not isinstance(manifest, list) or not manifest:
        raise ModelLoadError(model_json, "no 'weightsManifest' groups")
    weights: dict[str, Array] = {}
    for number, group in enumerate(manifest):
        if not isinstance(group, dict):
            raise ModelLoadError(model_json, f"weightsManifest group {number} is not an object")
        weights.update(_read_group(group, number, model_json))
    return weights


def _read_group(group: dict[str, Any], number: int, model_json: Path) -> dict[str, Array]:
    paths = [model_json.parent / p for p in group.get("paths", [])]
    chunks = []
    for shard in paths:
        try:
            chunks.append(shard.read_bytes())
        except FileNotFoundError:
            raise ModelLoadError(shard, "weight shard not found") from None
    data = b"".join(chunks)
    where = paths[0] if len(paths) == 1 else model_json
    offset = 0
    arrays: dict[str, Array] = {}
    for entry in group.get("weights", []):
        name, shape = entry.get("name"), entry.get("shape")
        if entry.get("dtype", "float32") != "float32" or "quantization" in entry:
            raise ModelLoadError(model_json, f"weight {name!r}: only plain float32 is supported")
        if not isinstance(name, str) or not isinstance(shape, list):
            raise ModelLoadError(model_json, f"group {number}: a weight lacks a name or shape")
        size = 4 * int(np.prod(shape, dtype=np.int64))
        if offset + size > len(data):
            raise ModelLoadError(
                where,
                f"truncated: group {number} holds {len(data)} bytes, weight {name!r} "
                f"{shape} needs bytes {offset}..{offset + size}",
            )
        raw = np.frombuffer(data, dtype="<f4", count=size // 4, offset=offset)
        arrays[name] = raw.astype(np.float32).reshape(shape)
        offset += size
    if offset != len(data):
        raise ModelLoadError(
            where, f"group {number} holds {len(data)} bytes but its weights use {offset}"
        )
    return arrays


def _by_layer(weights: dict[str, Array], model_json: Path) -> dict[str, list[Array]]:
    """Group weights by layer name ("lstm_1/kernel", "lstm_1/lstm_cell/kernel") in role order."""
    roles: dict[str, dict[str, Array]] = {}
    for full_name, array in weights.items():
        layer, _, rest = full_name.partition("/")
        role = rest.rsplit("/", 1)[-1].split(":")[0]
        roles.setdefault(layer, {})[role] = array
    grouped: dict[str, list[Array]] = {}
    order = {role for kinds in WEIGHT_ROLES.values() for role in kinds}
    for layer, found in roles.items():
        unknown = set(found) - order
        if unknown:
            raise ModelLoadError(
                model_json, f"layer {layer!r} has unknown weights {sorted(unknown)}"
            )
        ranked = sorted(found, key=lambda r: _ROLE_RANK[r])
        grouped[layer] = [found[r] for r in ranked]
    return grouped


_ROLE_RANK = {"embeddings": 0, "kernel": 1, "recurrent_kernel": 2, "bias": 3}
