"""A plain numpy generation loop: what the engine is measured against in bench/engine.py.

The loop a careful numpy programmer would write: weights laid out once, every product an
`np.matmul` into a preallocated buffer (BLAS, threaded), the first layer's input product a
table lookup, one step per character (a window model re-runs its window from zero state),
and inverse-CDF sampling on numpy's generator. It makes no promise the engine makes (rows
round differently with the batch size), so it is a speed reference only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shared.engine.model import LSTMModel, Mode

F32 = npt.NDArray[np.float32]


class NumpyLoop:
    """N streams of one model advanced one character per step with plain numpy."""

    def __init__(self, model: LSTMModel, streams: int, temperature: float = 0.8) -> None:
        self.model = model
        self.streams = streams
        self.temperature = np.float32(temperature)
        first = model.layers[0]
        inputs = first.kernel[: first.input_size]
        if model.embedding is not None:
            inputs = model.embedding @ inputs
        # A row per character, plus a zero-input row (bias only) for window padding.
        self.table = np.vstack([inputs + first.bias, first.bias[None, :]]).astype(np.float32)
        # Upper layers take [x, h] in one buffer, so each layer is one matmul.
        upper = [layer.kernel for layer in model.layers[1:]]
        self.kernels = [first.kernel[first.input_size :], *upper]
        self.biases = [layer.bias for layer in model.layers]
        self.units = [layer.units for layer in model.layers]
        self.xh = [np.zeros((streams, u), np.float32) for u in self.units[:1]] + [
            np.zeros((streams, a + b), np.float32)
            for a, b in zip(self.units[:-1], self.units[1:], strict=True)
        ]
        self.c = [np.zeros((streams, u), np.float32) for u in self.units]
        self.z = [np.zeros((streams, 4 * u), np.float32) for u in self.units]
        self.logits = np.zeros((streams, model.vocab_size), np.float32)
        self.ids = np.zeros(streams, np.int64)
        self.window = model.window if model.mode is Mode.WINDOW and model.window else 0
        self.history = np.full((streams, max(self.window, 1)), -1, np.int64)
        self.rng = np.random.default_rng(0)
        self.uniforms = np.zeros(streams, np.float64)

    def _h(self, layer: int) -> F32:
        """Return the view of layer `layer`'s hidden state inside its [x, h] buffer."""
        return self.xh[layer][:, self.xh[layer].shape[1] - self.units[layer] :]

    def _lstm_step(self, ids: npt.NDArray[np.int64]) -> None:
        """Advance every layer by one step on input ids."""
        for layer, units in enumerate(self.units):
            z = self.z[layer]
            np.matmul(self.xh[layer], self.kernels[layer], out=z)
            z += self.table[ids] if layer == 0 else self.biases[layer]
            i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
            i, f, o = self._gate(i), self._gate(f), self._gate(o)
            np.tanh(g, out=g)
            c = self.c[layer]
            c *= f
            c += i * g
            h = self._h(layer)
            np.multiply(o, np.tanh(c), out=h)
            if layer + 1 < len(self.units):
                self.xh[layer + 1][:, :units] = h

    def _gate(self, x: F32) -> F32:
        if self.model.recurrent_activation == "sigmoid":
            np.negative(x, out=x)
            np.exp(x, out=x)
            x += 1
            np.reciprocal(x, out=x)
            return x
        scale = 0.2 if self.model.recurrent_activation == "hard_sigmoid" else 1 / 6
        x *= np.float32(scale)
        x += np.float32(0.5)
        np.clip(x, 0, 1, out=x)
        return x

    def _reset(self) -> None:
        for array in (*self.xh, *self.c):
            array.fill(0)

    def step(self) -> None:
        """Generate one character for every stream."""
        if self.window:
            self._reset()
            for t in range(self.window):
                self._lstm_step(self.history[:, t])
        else:
            self._lstm_step(self.ids)
        top = self._h(len(self.units) - 1)
        np.matmul(top, self.model.output_kernel, out=self.logits)
        self.logits += self.model.output_bias
        self.ids[:] = self._draw(self.logits)
        if self.window:
            self.history[:, :-1] = self.history[:, 1:]
            self.history[:, -1] = self.ids

    def _draw(self, logits: F32) -> npt.NDArray[np.int64]:
        """Sample from softmax(logits / T) by inverse CDF."""
        logits /= self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        cumulative = np.cumsum(logits, axis=1)
        self.rng.random(out=self.uniforms)
        target = self.uniforms[:, None] * cumulative[:, -1:]
        picked: npt.NDArray[np.int64] = (cumulative <= target).sum(axis=1)
        return np.minimum(picked, self.model.vocab_size - 1)
