"""Next-character sampling over a batch: temperature, top-k, top-p and a counter-based RNG."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from shared.engine.kernels import exp32
from shared.engine.seeds import DERIVED_SEED_LIMIT as DERIVED_SEED_LIMIT
from shared.engine.seeds import MAX_RANDOM_SEED as MAX_RANDOM_SEED
from shared.engine.seeds import check_random_seed as check_random_seed
from shared.engine.seeds import derive_random_seed as derive_random_seed

U64 = npt.NDArray[np.uint64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is sampled."""

    length: int = 20  # characters to generate, >= 1
    temperature: float = 0.5  # 0 = greedy (argmax)
    top_k: int | None = None  # keep only the k most likely characters
    top_p: float | None = None  # keep the fewest likely characters whose mass reaches p
    stop: tuple[str, ...] = ()  # end when the text ends with one; it is not included

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"length must be an integer >= 1, got {self.length!r}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise ValueError(f"top_k must be >= 1, got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        stop = tuple(self.stop)
        if any(not isinstance(s, str) or not s for s in stop):
            raise ValueError("stop sequences must be non-empty strings")
        object.__setattr__(self, "stop", stop)


def _splitmix(x: U64) -> U64:
    # splitmix64's finaliser: a bijective mix of all 64 bits (uint64 arrays wrap silently).
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def counter_uniforms(seeds: U64, streams: U64, steps: npt.ArrayLike) -> F64:
    """Map (random_seed, stream, step) to a uniform in [0, 1), element by element."""
    counters = np.asarray(steps).astype(np.uint64)
    x = _splitmix(_splitmix(_splitmix(np.asarray(seeds, np.uint64)) ^ streams) ^ counters)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def probabilities(logits: F32, temperatures: F32) -> F32:
    """Return softmax(logits / T) row by row, computed stably; T = 0 gives argmax one-hot."""
    greedy = temperatures <= 0
    scale = np.where(greedy, np.float32(1), temperatures).astype(np.float32)
    scaled = logits / scale[:, None]
    scaled -= scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=1, keepdims=True)
    if greedy.any():
        rows = np.flatnonzero(greedy)
        scaled[rows] = 0
        scaled[rows, logits[rows].argmax(axis=1)] = 1
    return scaled


def truncate(probs: F32, top_k: I64, top_p: F32) -> F32:
    """Zero all but the top-k / top-p characters of each row and renormalise (0 / 1 = off)."""
    vocab = probs.shape[1]
    k = np.where(top_k > 0, np.minimum(top_k, vocab), vocab)
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    # A character stays if it is among the k best and the mass before it is still below p.
    before = np.cumsum(ranked, axis=1, dtype=np.float64) - ranked
    within_p = (before < top_p[:, None]) | (top_p[:, None] >= 1)
    keep_ranked = (np.arange(vocab) < k[:, None]) & within_p
    keep = np.zeros_like(keep_ranked)
    np.put_along_axis(keep, order, keep_ranked, axis=1)
    kept = np.where(keep, probs, np.float32(0))
    kept /= kept.sum(axis=1, keepdims=True)
    return kept


def draw(probs: F32, uniforms: F64) -> I64:
    """Pick, per row, the first j with u < cumsum(p)[j] (p float32 summed in float64)."""
    cumulative = np.cumsum(probs, axis=1, dtype=np.float64)
    picked = (cumulative <= uniforms[:, None]).sum(axis=1)
    # Rounding can leave the total just under u: fall back to the last possible character.
    last = probs.shape[1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=1)
    chosen: I64 = np.minimum(picked, last).astype(np.int64)
    return chosen


def sample(logits: F32, temperatures: F32, top_k: I64, top_p: F32, uniforms: F64) -> I64:
    """Choose the next character of every row: greedy where T = 0, else a filtered draw."""
    probs = probabilities(logits, temperatures)
    filtered = np.flatnonzero((top_k > 0) | (top_p < 1))
    if filtered.size:
        probs[filtered] = truncate(probs[filtered], top_k[filtered], top_p[filtered])
    return draw(probs, uniforms)


# Compiled versions of the functions above, one row at a time, for the engine's compiled steps
# (shared/engine/steps.py): each row on its own, so identical alone or in a batch.
# tests/unit/engine/test_sampling.py checks them against the numpy versions.
_jit = njit(nogil=True, cache=True, error_model="numpy")


@_jit
def _splitmix_one(x):  # type: ignore[no-untyped-def]
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@_jit
def uniform_at(seed, stream, step):  # type: ignore[no-untyped-def]
    """Return counter_uniforms for one (random_seed, stream, step)."""
    x = _splitmix_one(_splitmix_one(_splitmix_one(seed) ^ stream) ^ np.uint64(step))
    return np.float64(x >> np.uint64(11)) * (1.0 / 2**53)


@_jit
def sample_row(row, temperature, top_k, top_p, uniform, probs):  # type: ignore[no-untyped-def]
    """Return sample() of one row of logits; probs is scratch of the row's length."""
    vocab = row.shape[0]
    if temperature <= 0:
        return np.argmax(row)
    # Stable softmax of logits / T.
    top = np.float32(-np.inf)
    for j in range(vocab):
        probs[j] = row[j] / temperature
        top = max(top, probs[j])
    for j in range(vocab):  # apart from the sum, so that it vectorises
        probs[j] = exp32(probs[j] - top)
    total = np.float32(0)
    for j in range(vocab):
        total += probs[j]
    for j in range(vocab):
        probs[j] /= total
    if top_k > 0 or top_p < 1:
        _truncate_row(probs, top_k, top_p)
    # The first j with u < cumsum(p)[j], else the last character with p > 0.
    running = 0.0
    for j in range(vocab):
        running += np.float64(probs[j])
        if uniform < running:
            return j
    pick = vocab - 1
    while pick > 0 and probs[pick] <= 0:
        pick -= 1
    return pick


@_jit
def _truncate_row(probs, top_k, top_p):  # type: ignore[no-untyped-def]
    vocab = probs.shape[0]
    order = np.argsort(-probs, kind="mergesort")
    k = vocab if top_k <= 0 else min(top_k, vocab)
    before = 0.0
    kept = np.float32(0)
    for rank in range(vocab):
        j = order[rank]
        p = probs[j]
        # A character stays if it is among the k best and the mass before it is still below p.
        if rank < k and (top_p >= 1 or before < top_p):
            kept += p
        else:
            probs[j] = 0
        before += np.float64(p)
    for j in range(vocab):
        probs[j] /= kept
