"""Lay out an LSTMModel's weights the way Keras and TensorFlow.js layers store them."""

from __future__ import annotations

import numpy as np

from shared.engine.model import Array, LSTMLayer

# Recurrent activation name each target writes for a model's activation, and the factor that
# scales the i, f and o gate pre-activations to keep the cell's maths: Keras 3's hard sigmoid
# clip(x / 6 + 0.5) at 1.2 x equals Keras 2's and tfjs's clip(0.2 x + 0.5), and back at 5/6.
KERAS3_ACTIVATIONS: dict[str, tuple[str, float]] = {
    "sigmoid": ("sigmoid", 1.0),
    "hard_sigmoid_k3": ("hard_sigmoid", 1.0),
    "hard_sigmoid": ("hard_sigmoid", 1.2),
}
TFJS_ACTIVATIONS: dict[str, tuple[str, float]] = {
    "sigmoid": ("sigmoid", 1.0),
    "hard_sigmoid": ("hard_sigmoid", 1.0),
    "hard_sigmoid_k3": ("hard_sigmoid", 5.0 / 6.0),
}


def lstm_weights(layer: LSTMLayer, gate_scale: float = 1.0) -> tuple[Array, Array, Array]:
    """Split a fused kernel into (kernel, recurrent kernel, bias), scaling the i, f, o gates."""
    units = layer.units
    kernel, bias = layer.kernel, layer.bias
    if gate_scale != 1.0:
        scale = np.full(4 * units, gate_scale, np.float32)
        scale[2 * units : 3 * units] = 1.0  # the cell candidate goes through tanh, unscaled
        kernel, bias = kernel * scale, bias * scale
    return (
        np.ascontiguousarray(kernel[: layer.input_size]),
        np.ascontiguousarray(kernel[layer.input_size :]),
        np.ascontiguousarray(bias),
    )


def rescale_note(source: str, target: str, factor: float) -> str:
    """Say that gate weights were rescaled, so readers know why results differ in the last bits."""
    return (
        f"recurrent activation {source} written as {target}: i, f, o gate weights scaled by "
        f"{factor:.6g}, equal up to float32 rounding"
    )
