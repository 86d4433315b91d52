"""Sampling: the counter-based random stream, the draw rule, top-k/top-p, compiled = numpy."""

from __future__ import annotations

import numpy as np
import pytest

from shared.engine.sampling import (
    counter_uniforms,
    draw,
    probabilities,
    sample,
    sample_row,
    truncate,
    uniform_at,
)


def test_uniforms_are_a_pure_function_of_seed_stream_and_step() -> None:
    seeds = np.array([1, 1, 1, 2, 2**64 - 1], np.uint64)
    streams = np.array([0, 0, 1, 0, 3], np.uint64)
    steps = np.array([0, 1, 0, 0, 7], np.int64)
    first = counter_uniforms(seeds, streams, steps)
    assert len(set(first.tolist())) == 5 and ((first >= 0) & (first < 1)).all()
    assert np.array_equal(counter_uniforms(seeds[::-1], streams[::-1], steps[::-1]), first[::-1])
    compiled = [uniform_at(seeds[r], streams[r], steps[r]) for r in range(5)]
    assert np.array_equal(compiled, first)


def test_uniforms_look_uniform() -> None:
    n = 20000
    u = counter_uniforms(np.full(n, 9, np.uint64), np.zeros(n, np.uint64), np.arange(n))
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert abs(u.mean() - 0.5) < 0.01 and counts.min() > 1800


def test_draw_takes_the_first_index_whose_cumulative_sum_exceeds_u() -> None:
    probs = np.array([[0.1, 0.2, 0.3, 0.4]] * 5, np.float32)
    u = np.array([0.0, 0.0999, 0.1000001, 0.65, 0.99999])
    assert draw(probs, u).tolist() == [0, 0, 1, 3, 3]
    # Rounding that leaves the total below u falls back to the last possible character.
    short = np.array([[0.5, 0.49999, 0.0]], np.float32)
    assert draw(short, np.array([0.999999])).tolist() == [1]


def test_temperature_zero_is_argmax_and_softmax_is_stable() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [1000.0, 999.0, -1000.0]], np.float32)
    probs = probabilities(logits, np.array([0.0, 0.01], np.float32))
    assert probs[0].tolist() == [0.0, 1.0, 0.0]
    assert np.isfinite(probs).all() and probs[1].argmax() == 0


def test_top_k_and_top_p() -> None:
    probs = np.array([[0.05, 0.4, 0.15, 0.3, 0.1]] * 3, np.float32)
    kept = truncate(probs, np.array([2, 0, 2]), np.array([1.0, 0.6, 0.5], np.float32))
    np.testing.assert_allclose(kept[0], [0, 0.4 / 0.7, 0, 0.3 / 0.7, 0], rtol=1e-6)
    np.testing.assert_allclose(kept[1], [0, 0.4 / 0.7, 0, 0.3 / 0.7, 0], rtol=1e-6)
    np.testing.assert_allclose(kept[2], [0, 0.4 / 0.7, 0, 0.3 / 0.7, 0], rtol=1e-6)
    only = truncate(probs[:1], np.array([0]), np.array([0.1], np.float32))
    assert only[0].tolist() == [0, 1, 0, 0, 0]


@pytest.mark.parametrize("vocab", [5, 84, 116])
def test_compiled_sampling_matches_numpy(vocab: int) -> None:
    rng = np.random.default_rng(vocab)
    n = 400
    logits = rng.normal(0, 3, (n, vocab)).astype(np.float32)
    temperatures = rng.choice([0.0, 0.3, 1.0, 1.7], n).astype(np.float32)
    top_k = rng.choice([0, 1, 3, 10], n).astype(np.int64)
    top_p = rng.choice([1.0, 0.5, 0.9], n).astype(np.float32)
    u = rng.random(n)
    expected = sample(logits, temperatures, top_k, top_p, u)
    scratch = np.empty(vocab, np.float32)  # shared by every row, as in the compiled steps
    got = np.array(
        [
            sample_row(logits[r], temperatures[r], top_k[r], top_p[r], u[r], scratch)
            for r in range(n)
        ]
    )
    # Sums differ in their last bit between the two; a u on that edge may pick a neighbour.
    assert (got == expected).mean() > 0.99
    for r in range(0, n, 37):  # a row's pick does not depend on the rows drawn before it
        fresh = np.empty(vocab, np.float32)
        assert sample_row(logits[r], temperatures[r], top_k[r], top_p[r], u[r], fresh) == got[r]
