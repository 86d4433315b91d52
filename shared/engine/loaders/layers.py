"""Turn a Keras (or TensorFlow.js layers) Sequential config plus weights into an LSTMModel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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

# Layers that do nothing at inference time.
PASSTHROUGH = frozenset({"InputLayer", "Dropout", "SpatialDropout1D", "GaussianNoise"})
SUPPORTED = PASSTHROUGH | {"LSTM", "Dense", "Activation", "Embedding"}
# Weights each layer kind holds, in the order Keras lists them.
WEIGHT_ROLES: dict[str, tuple[str, ...]] = {
    "LSTM": ("kernel", "recurrent_kernel", "bias"),
    "Dense": ("kernel", "bias"),
    "Embedding": ("embeddings",),
}


@dataclass(frozen=True)
class LayerConfig:
    """One layer of a Sequential model: its class, name and config."""

    kind: str
    name: str
    config: dict[str, Any]


@dataclass
class Parts:
    """What the layers add up to while walking the model."""

    embedding: Array | None = None
    layers: list[LSTMLayer] = field(default_factory=list)
    activations: set[str] = field(default_factory=set)
    output: tuple[Array, Array] | None = None
    softmax: bool = False
    return_sequences: bool = True


def sequential_layers(model_config: Any, path: Path) -> list[LayerConfig]:
    """Return the layer list of a Sequential model config, wrapped or not, list or dict."""
    config = model_config
    if isinstance(config, dict) and "model_config" in config:
        config = config["model_config"]
    if not isinstance(config, dict) or "config" not in config:
        raise ModelLoadError(path, "the model topology has no 'config'")
    kind = config.get("class_name")
    if kind not in ("Sequential", "Model", "Functional"):
        raise ModelLoadError(path, f"unsupported model class {kind!r}")
    layers = config["config"]
    if isinstance(layers, dict):
        layers = layers.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ModelLoadError(path, "the model topology lists no layers")
    result = []
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
            raise ModelLoadError(path, f"layer {index} is not a {{class_name, config}} object")
        conf = layer["config"]
        result.append(LayerConfig(str(layer.get("class_name")), str(conf.get("name", "")), conf))
    return result


def activation_name(value: Any) -> str:
    """Return an activation's name whether Keras wrote it as a string or an object."""
    if isinstance(value, dict):
        value = value.get("config", value.get("class_name"))
        if isinstance(value, dict):
            value = value.get("name")
    return str(value)


def input_length(layers: Sequence[LayerConfig]) -> int | None:
    """Return the fixed sequence length the model was built for, if any."""
    for layer in layers:
        for key in ("batch_input_shape", "batch_shape"):
            shape = layer.config.get(key)
            if isinstance(shape, list) and len(shape) >= 2:
                return shape[1] if isinstance(shape[1], int) else None
        build = layer.config.get("input_length")
        if isinstance(build, int):
            return build
    return None


def build_model(
    layers: Sequence[LayerConfig],
    weights: Mapping[str, Sequence[Array]],
    vocab: tuple[str, ...],
    *,
    path: Path,
    name: str,
    format: str,
    keras3: bool,
    warnings: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> LSTMModel:
    """Check the layer stack and assemble the model from weights bound by layer name."""
    parts = Parts()
    for layer in layers:
        if layer.kind not in SUPPORTED:
            raise ModelLoadError(path, f"unknown layer type {layer.kind!r} ({layer.name})")
        if parts.output is not None and layer.kind not in PASSTHROUGH | {"Activation"}:
            raise ModelLoadError(path, f"layer {layer.name!r} ({layer.kind}) follows the output")
        _add_layer(parts, layer, _weights_of(layer, weights, path), path, keras3)
    if not parts.layers or parts.output is None:
        raise ModelLoadError(path, "expected LSTM layers followed by a Dense output layer")
    if not parts.softmax:
        raise ModelLoadError(path, "the output layer has no softmax activation")
    if len(parts.activations) != 1:
        raise ModelLoadError(path, f"LSTM layers mix recurrent activations {parts.activations}")
    mode, window, notes = _mode(layers, parts.return_sequences)
    all_warnings = [*warnings, *vocab_warnings(vocab), *notes]
    try:
        return LSTMModel(
            name=name,
            format=format,
            source=path,
            vocab=vocab,
            embedding=parts.embedding,
            layers=tuple(parts.layers),
            recurrent_activation=parts.activations.pop(),
            output_kernel=parts.output[0],
            output_bias=parts.output[1],
            mode=mode,
            window=window,
            defaults=Defaults(**{"seed": default_seed(vocab), **(defaults or {})}),
            warnings=tuple(all_warnings),
            metadata=metadata or {},
        )
    except ValueError as error:
        raise ModelLoadError(
            path, f"weights do not fit the vocabulary or each other: {error}"
        ) from None


def _weights_of(
    layer: LayerConfig, weights: Mapping[str, Sequence[Array]], path: Path
) -> list[Array]:
    roles = WEIGHT_ROLES.get(layer.kind, ())
    if layer.kind == "Dense" and layer.config.get("use_bias") is False:
        roles = ("kernel",)
    if layer.kind == "LSTM" and layer.config.get("use_bias") is False:
        roles = ("kernel", "recurrent_kernel")
    found = list(weights.get(layer.name, ()))
    if len(found) != len(roles):
        raise ModelLoadError(
            path, f"layer {layer.name!r} needs weights {list(roles)}, found {len(found)}"
        )
    return found


def _add_layer(
    parts: Parts, layer: LayerConfig, arrays: list[Array], path: Path, keras3: bool
) -> None:
    config = layer.config
    if layer.kind == "Embedding":
        if parts.layers or parts.embedding is not None:
            raise ModelLoadError(path, f"embedding {layer.name!r} must be the first layer")
        parts.embedding = arrays[0]
    elif layer.kind == "LSTM":
        if not parts.return_sequences:
            raise ModelLoadError(path, f"LSTM {layer.name!r} follows an LSTM without sequences")
        parts.layers.append(_lstm(layer, arrays, path))
        parts.activations.add(_recurrent_activation(layer, path, keras3))
        parts.return_sequences = bool(config.get("return_sequences", False))
    elif layer.kind == "Dense":
        if not parts.layers:
            raise ModelLoadError(path, f"Dense layer {layer.name!r} comes before any LSTM")
        kernel = arrays[0]
        bias = arrays[1] if len(arrays) > 1 else np.zeros(kernel.shape[-1], np.float32)
        parts.output = (kernel, bias)
        parts.softmax = _output_activation(layer, path)
    elif layer.kind == "Activation":
        if parts.output is None or parts.softmax:
            raise ModelLoadError(path, f"activation {layer.name!r} is not a softmax after Dense")
        parts.softmax = _output_activation(layer, path)


def _lstm(layer: LayerConfig, arrays: list[Array], path: Path) -> LSTMLayer:
    config = layer.config
    if activation_name(config.get("activation", "tanh")) != "tanh":
        raise ModelLoadError(path, f"LSTM {layer.name!r}: only the tanh activation is supported")
    if config.get("go_backwards") or config.get("return_state"):
        raise ModelLoadError(path, f"LSTM {layer.name!r}: go_backwards/return_state unsupported")
    kernel, recurrent = arrays[0], arrays[1]
    bias = arrays[2] if len(arrays) > 2 else np.zeros(kernel.shape[-1], np.float32)
    if (
        kernel.ndim != 2
        or recurrent.ndim != 2
        or recurrent.shape[1] != kernel.shape[1]
        or recurrent.shape[0] * 4 != kernel.shape[1]
        or bias.shape != (kernel.shape[1],)
    ):
        raise ModelLoadError(
            path,
            f"LSTM {layer.name!r}: kernel {list(kernel.shape)}, recurrent kernel "
            f"{list(recurrent.shape)} and bias {list(bias.shape)} do not fit",
        )
    units = config.get("units")
    if isinstance(units, int) and units != recurrent.shape[0]:
        raise ModelLoadError(
            path, f"LSTM {layer.name!r} has {units} units but weights for {recurrent.shape[0]}"
        )
    return LSTMLayer(kernel=np.concatenate([kernel, recurrent], axis=0), bias=bias)


def _recurrent_activation(layer: LayerConfig, path: Path, keras3: bool) -> str:
    name = activation_name(layer.config.get("recurrent_activation", "sigmoid"))
    if name == "hard_sigmoid":
        # Keras 3 redefined hard_sigmoid as relu6(x + 3) / 6; Keras 2 and tfjs use 0.2x + 0.5.
        return "hard_sigmoid_k3" if keras3 else "hard_sigmoid"
    if name != "sigmoid":
        raise ModelLoadError(
            path, f"LSTM {layer.name!r}: unsupported recurrent activation {name!r}"
        )
    return name


def _output_activation(layer: LayerConfig, path: Path) -> bool:
    name = activation_name(layer.config.get("activation", "linear"))
    if name not in ("softmax", "linear"):
        raise ModelLoadError(path, f"layer {layer.name!r}: unsupported activation {name!r}")
    return name == "softmax"


def _mode(layers: Sequence[LayerConfig], sequences: bool) -> tuple[Mode, int | None, list[str]]:
    if sequences:
        return Mode.STATEFUL, None, []
    window = input_length(layers)
    if window is None:
        note = "the last LSTM returns no sequences but the input length is not fixed; run stateful"
        return Mode.STATEFUL, None, [note]
    return Mode.WINDOW, window, []
