"""A model's weights laid out for the compiled step, and the buffers one pass works in."""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.engine import kernels
from shared.engine.model import LSTMModel

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


_NETWORKS: weakref.WeakKeyDictionary[LSTMModel, Network] = weakref.WeakKeyDictionary()
_NETWORKS_LOCK = threading.Lock()


def network(model: LSTMModel) -> Network:
    """Return the model's compiled-step layout, built once per model object."""
    with _NETWORKS_LOCK:
        built = _NETWORKS.get(model)
        if built is None:
            built = _NETWORKS[model] = Network(model)
        return built


class Network:
    """A model's weights laid out for the compiled step (see network())."""

    def __init__(self, model: LSTMModel) -> None:
        self.model = model
        self.kind = kernels.ACTIVATION_CODES[model.recurrent_activation]
        self.units = [layer.units for layer in model.layers]
        first = model.layers[0]
        inputs = first.kernel[: first.input_size].astype(np.float64)
        if model.embedding is not None:
            inputs = model.embedding.astype(np.float64) @ inputs
        # The first layer's input product is a row per character (one-hot or embedding),
        # plus a last row, only the bias, that ZERO_INPUT (-1) selects by wrapping around.
        projection = np.vstack([inputs + first.bias, first.bias[None, :]])
        self.tables: list[F32] = [_pad(projection)]
        self.wx: list[F32] = [kernels.pack(_pad(np.zeros((0, 4 * first.units))))]
        for layer in model.layers[1:]:
            self.tables.append(_pad(layer.bias[None, :]))
            self.wx.append(kernels.pack(_pad(layer.kernel[: layer.input_size])))
        self.wh = [kernels.pack(_pad(layer.kernel[layer.input_size :])) for layer in model.layers]
        self.gate_width = [table.shape[1] for table in self.tables]
        self.out_table = _pad(model.output_bias[None, :])
        self.out_w = kernels.pack(_pad(model.output_kernel))
        self.out_width = self.out_table.shape[1]
        self.no_h = kernels.pack(np.zeros((0, self.out_width), np.float32))
        self.no_hws = [kernels.pack(np.zeros((0, width), np.float32)) for width in self.gate_width]

    def arguments(
        self, ids: I64, starts: I64, hs: list[F32], cs: list[F32], scratch: Scratch
    ) -> Forward:
        """Check and bundle one forward pass of ids [T, n] from the states hs/cs (in place)."""
        steps, n = ids.shape
        if starts.shape != (n,) or any(
            h.shape != (n, u) for h, u in zip(hs, self.units, strict=False)
        ):
            raise ValueError("ids, starts and states disagree on the number of rows")
        no_input = scratch.view(scratch.no_input, (steps, n, 0))
        zs = tuple(
            scratch.view(g, (n, w)) for g, w in zip(scratch.gates, self.gate_width, strict=False)
        )
        seqs = tuple(
            scratch.view(flat, (steps, n, u))
            for flat, u in zip(scratch.sequences, self.units, strict=False)
        )
        inputs = [no_input, *seqs[:-1]]
        for layer, z in enumerate(zs):
            pairs = ((inputs[layer], self.wx[layer]), (hs[layer], self.wh[layer]))
            kernels.check_shapes(z, self.tables[layer], *pairs)
            if cs[layer].shape != hs[layer].shape or not hs[layer].flags.c_contiguous:
                raise ValueError("states must be C-ordered [n, H] arrays")
        logits = scratch.view(scratch.logits, (n, self.out_width))
        no_h = scratch.view(scratch.no_input, (n, 0))
        kernels.check_shapes(logits, self.out_table, (hs[-1], self.out_w), (no_h, self.no_h))
        zero_ids = scratch.view(scratch.zero_ids, (steps, n))
        args = (
            tuple(self.tables), ids, tuple(self.wx), tuple(self.wh), tuple(hs), tuple(cs),
            starts, zs, seqs, no_input, zero_ids, self.kind, self.out_table, self.out_w,
            no_h, self.no_h, logits, tuple(scratch.pres), tuple(self.no_hws),
        )  # fmt: skip
        return Forward(args, n, logits[:, : self.model.vocab_size])


@dataclass(frozen=True)
class Forward:
    """The checked arguments of one compiled forward pass, reusable while shapes hold."""

    args: tuple[Any, ...]
    rows: int
    logits: F32  # where the pass leaves the logits [n, V]

    def __call__(self) -> F32:
        """Run the pass and return the logits."""
        kernels.forward(*self.args, rows=self.rows)
        return self.logits


def _pad(array: npt.NDArray[Any]) -> F32:
    """Return a float32 copy with zero columns added up to a multiple of the kernel tile."""
    columns = -(-array.shape[1] // kernels.TILE_COLS) * kernels.TILE_COLS
    padded = np.zeros((array.shape[0], columns), np.float32)
    padded[:, : array.shape[1]] = array
    return padded


class Scratch:
    """Preallocated buffers for up to `steps` x `rows` inputs, viewed at the size in use."""

    def __init__(self, net: Network, steps: int, rows: int) -> None:
        size = steps * rows
        self.sequences = [np.empty(size * u, np.float32) for u in net.units]
        self.gates = [np.empty(rows * width, np.float32) for width in net.gate_width]
        # Upper layers' gates for several steps at once (a long seed): see kernels._forward.
        block = kernels.block_size(steps, rows)
        self.pres = [np.empty(block * width, np.float32) for width in net.gate_width]
        self.logits = np.empty(rows * net.out_width, np.float32)
        self.zero_ids = np.zeros(max(size, rows), np.int64)
        self.no_input = np.zeros(0, np.float32)

    @staticmethod
    def view(flat: npt.NDArray[Any], shape: tuple[int, ...]) -> npt.NDArray[Any]:
        """Return the leading part of a flat buffer as a C-contiguous array of that shape."""
        return flat[: math.prod(shape)].reshape(shape)
