"""The compiled kernels: rows independent of batch size, position and threads; exact math."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.engine import kernels
from shared.engine.model import LSTMLayer, LSTMModel, Mode
from shared.engine.network import Network, Scratch


def _model(sizes: list[int], vocab: int, embedding: int | None) -> LSTMModel:
    rng = np.random.default_rng(sum(sizes) + vocab)
    inputs = embedding or vocab
    layers = []
    for units in sizes:
        kernel = rng.normal(0, 0.4, (inputs + units, 4 * units)).astype(np.float32)
        layers.append(LSTMLayer(kernel, rng.normal(0, 0.3, 4 * units).astype(np.float32)))
        inputs = units
    table = None if embedding is None else rng.normal(0, 1, (vocab, embedding)).astype(np.float32)
    return LSTMModel(
        name="k", format="ml5", source=Path("."), vocab=tuple(chr(65 + i) for i in range(vocab)),
        embedding=table,
        layers=tuple(layers), recurrent_activation="sigmoid",
        output_kernel=rng.normal(0, 1, (sizes[-1], vocab)).astype(np.float32),
        output_bias=rng.normal(0, 0.3, vocab).astype(np.float32), mode=Mode.STATEFUL,
    )  # fmt: skip


def _logits(net: Network, ids: np.ndarray, parallel: bool) -> np.ndarray:
    steps, n = ids.shape
    hs = [np.zeros((n, u), np.float32) for u in net.units]
    cs = [np.zeros((n, u), np.float32) for u in net.units]
    bundle = net.arguments(ids, np.zeros(n, np.int64), hs, cs, Scratch(net, steps, n))
    kernels.forward(*bundle.args, rows=n, parallel=parallel)
    return bundle.logits.copy()


@pytest.mark.parametrize(("sizes", "vocab", "embedding"), [([5], 7, None), ([36, 20], 33, 6)])
def test_rows_do_not_depend_on_the_batch(
    sizes: list[int], vocab: int, embedding: int | None
) -> None:
    net = Network(_model(sizes, vocab, embedding))
    ids = np.random.default_rng(0).integers(0, vocab, (6, 37))
    full_serial = _logits(net, ids, parallel=False)
    full_threads = _logits(net, ids, parallel=True)
    assert np.array_equal(full_serial, full_threads)
    for row in (0, 3, 4, 17, 36):
        assert np.array_equal(
            _logits(net, ids[:, row : row + 1], parallel=False)[0], full_serial[row]
        )
    shuffled = np.random.default_rng(1).permutation(37)
    assert np.array_equal(_logits(net, ids[:, shuffled], parallel=True), full_serial[shuffled])


def test_logits_match_float64_math() -> None:
    model = _model([12, 8], 10, 4)
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    h = [np.zeros(u) for u in (12, 8)]
    c = [np.zeros(u) for u in (12, 8)]
    for char in ids:
        x = model.embedding[char].astype(np.float64)
        for index, layer in enumerate(model.layers):
            z = np.concatenate([x, h[index]]) @ layer.kernel + layer.bias
            i, f, g, o = np.split(z, 4)
            c[index] = c[index] / (1 + np.exp(-f)) + np.tanh(g) / (1 + np.exp(-i))
            h[index] = np.tanh(c[index]) / (1 + np.exp(-o))
            x = h[index]
    expected = h[-1] @ model.output_kernel + model.output_bias
    got = _logits(Network(model), np.array(ids)[:, None], parallel=False)[0]
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_bad_shapes_are_refused_before_touching_memory() -> None:
    net = Network(_model([8], 5, None))
    with pytest.raises(ValueError, match="rows"):
        net.arguments(np.zeros((1, 2), np.int64), np.zeros(3, np.int64),
                      [np.zeros((2, 8), np.float32)], [np.zeros((2, 8), np.float32)],
                      Scratch(net, 1, 2))  # fmt: skip
    with pytest.raises(ValueError, match="multiple of 16"):
        kernels.pack(np.zeros((3, 10), np.float32))


def test_a_long_pass_equals_one_step_at_a_time() -> None:
    # Upper layers compute their input product for blocks of steps in a long pass.
    net = Network(_model([36, 20, 12], 9, 5))
    ids = np.random.default_rng(2).integers(0, 9, (300, 3))
    hs = [np.zeros((3, u), np.float32) for u in net.units]
    cs = [np.zeros((3, u), np.float32) for u in net.units]
    scratch = Scratch(net, 1, 3)
    for t in range(ids.shape[0]):
        bundle = net.arguments(ids[t : t + 1], np.zeros(3, np.int64), hs, cs, scratch)
        kernels.forward(*bundle.args, rows=3, parallel=False)
    assert np.array_equal(_logits(net, ids, parallel=False), bundle.logits)
