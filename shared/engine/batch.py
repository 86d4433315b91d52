"""Generate text: a batch of sequences of one model advancing one character per step."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.engine.model import ZERO_INPUT, LSTMModel, Mode, UnknownChars
from shared.engine.network import Forward, Scratch, network
from shared.engine.sampling import (
    MAX_RANDOM_SEED,
    SamplingParams,
    check_random_seed,
    derive_random_seed,
    probabilities,
    sample_into,
    uniforms_into,
)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
# Maps (random seeds, streams, steps) of the active rows to one uniform each.
UniformSource = Callable[[U64, U64, I64], npt.NDArray[np.float64]]
CHUNK = 256  # generated ids kept per row before they are decoded into text


class FinishReason(StrEnum):
    """Why a sequence stopped."""

    LENGTH = "length"
    STOP = "stop"


@dataclass(frozen=True)
class Finished:
    """A sequence that left the batch, with its final text."""

    key: Hashable
    text: str
    reason: FinishReason


@dataclass(frozen=True)
class Generation:
    """The samples of one request and the random seed that reproduces them."""

    texts: list[str]
    finish_reasons: list[FinishReason]
    random_seed: int

    @property
    def text(self) -> str:
        """Return the first sample."""
        return self.texts[0]


@dataclass(frozen=True)
class CharProbability:
    """One character of a next-character distribution."""

    char: str
    probability: float


@dataclass
class _Sequence:
    """Per-sequence bookkeeping that is not part of the numeric step."""

    key: Hashable
    params: SamplingParams
    pieces: list[str] = field(default_factory=list)  # decoded text of flushed chunks
    ends: list[int] = field(default_factory=list)  # the text's length after each piece
    tail: str = ""  # recent text, kept only when there are stop sequences

    def add_piece(self, piece: str) -> None:
        self.pieces.append(piece)
        self.ends.append((self.ends[-1] if self.ends else 0) + len(piece))


def _check_ids(model: LSTMModel, seed_ids: Sequence[int]) -> I64:
    ids = np.asarray(list(seed_ids), dtype=np.int64)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError("the seed must hold at least one character id")
    bad = (ids >= model.vocab_size) | ((ids < 0) & (ids != ZERO_INPUT))
    if bad.any():
        raise ValueError(f"seed ids outside the vocabulary: {sorted(set(ids[bad].tolist()))}")
    return ids


def _check_generated(model: LSTMModel, ids: Sequence[int]) -> I64:
    generated = np.asarray(list(ids), dtype=np.int64)
    if generated.ndim != 1 or ((generated < 0) | (generated >= model.vocab_size)).any():
        raise ValueError("ids to resume from must be vocabulary ids")
    return generated


class Batch:
    """Sequences of one model that advance together, one character per step.

    One thread drives a batch (add, step, remove, text); it holds no lock of its own.
    """

    def __init__(
        self, model: LSTMModel, capacity: int = 256, *, uniforms: UniformSource | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.model = model
        self.capacity = capacity
        self._net = network(model)
        self._scratch = Scratch(self._net, model.window or 1, capacity)
        self._uniforms = uniforms  # None: the counter-based stream (compiled)
        self._uniform_buffer = np.zeros(capacity, np.float64)
        self._ids_buffer = np.zeros(capacity, np.int64)
        self._window = model.window if model.mode is Mode.WINDOW else None
        self._vocab = np.array(model.vocab, dtype=object)
        self._seqs: list[_Sequence] = []  # by row; rows 0..len-1 are active
        self._rows: dict[Hashable, int] = {}
        units = self._net.units
        self._h = [np.zeros((capacity, u), np.float32) for u in units]
        self._c = [np.zeros((capacity, u), np.float32) for u in units]
        self._next = np.zeros(capacity, np.int64)  # stateful: the next input id
        width = self._window or 1
        self._win = np.full((capacity, width), ZERO_INPUT, np.int64)  # window: last W ids
        self._filled = np.zeros(capacity, np.int64)  # window: how many of them are real
        self._temperature = np.zeros(capacity, np.float32)
        self._top_k = np.zeros(capacity, np.int64)
        self._top_p = np.ones(capacity, np.float32)
        self._length = np.zeros(capacity, np.int64)
        self._seed = np.zeros(capacity, np.uint64)
        self._stream = np.zeros(capacity, np.uint64)
        self._done = np.zeros(capacity, np.int64)  # characters generated
        self._chunk = np.zeros((capacity, CHUNK), np.int64)
        self._has_stop = np.zeros(capacity, np.bool_)
        rows = capacity if self._window else 0
        self._zero_h = [np.zeros(rows * u, np.float32) for u in units]
        self._zero_c = [np.zeros(rows * u, np.float32) for u in units]
        self._win_t = np.zeros(rows * width, np.int64)  # window ids, time-major, for the pass
        self._starts = np.zeros(capacity, np.int64)  # window: first real step of each row
        self._passes: dict[int, Forward] = {}  # checked pass arguments by active row count
        self._row_index = np.arange(capacity)
        self._row_arrays: list[npt.NDArray[Any]] = [
            *self._h, *self._c, self._next, self._win, self._filled, self._temperature,
            self._top_k, self._top_p, self._length, self._seed, self._stream, self._done,
            self._chunk, self._has_stop,
        ]  # fmt: skip

    def __len__(self) -> int:
        return len(self._seqs)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def add(
        self,
        key: Hashable,
        seed_ids: Sequence[int],
        params: SamplingParams,
        random_seed: int,
        stream: int = 0,
        resume: Sequence[int] = (),
    ) -> None:
        """Add a sequence and feed its seed; it generates from the next step on.

        `resume` holds ids this sequence generated before (in an earlier batch): they are fed
        after the seed and count as its first steps, so the sequence goes on exactly as if it
        had never left. Its text starts with them.
        """
        if key in self._rows:
            raise KeyError(f"sequence {key!r} is already in the batch")
        if len(self._seqs) >= self.capacity:
            raise OverflowError(f"the batch is full ({self.capacity} sequences)")
        ids = _check_ids(self.model, seed_ids)
        seed = check_random_seed(random_seed)
        if isinstance(stream, bool) or not 0 <= stream <= MAX_RANDOM_SEED:
            raise ValueError(f"stream must be an integer in [0, 2**64), got {stream!r}")
        generated = _check_generated(self.model, resume)
        if generated.size >= params.length:
            raise ValueError(
                f"{generated.size} ids to resume from, for a length of {params.length}"
            )
        row = len(self._seqs)
        self._temperature[row] = params.temperature
        self._top_k[row] = params.top_k or 0
        self._top_p[row] = 1.0 if params.top_p is None else params.top_p
        self._length[row] = params.length
        self._seed[row] = seed
        self._stream[row] = stream
        self._done[row] = generated.size
        self._has_stop[row] = bool(params.stop)
        self._prefill(row, np.concatenate([ids, generated]))
        self._seqs.append(self._resumed(key, params, row, generated))
        self._rows[key] = row

    def _resumed(self, key: Hashable, params: SamplingParams, row: int, ids: I64) -> _Sequence:
        """Return the bookkeeping of a sequence that generated `ids` already: full chunks as
        text, the rest in the row's chunk buffer, the end of the text for stop sequences."""
        seq = _Sequence(key, params)
        full = ids.size - ids.size % CHUNK
        for start in range(0, full, CHUNK):
            seq.add_piece("".join(self._vocab[ids[start : start + CHUNK]]))
        self._chunk[row, : ids.size - full] = ids[full:]
        if params.stop and ids.size:
            longest = max(len(s) for s in params.stop)
            recent = "".join(self._vocab[ids[-longest:]])
            seq.tail = recent[-(longest - 1) :] if longest > 1 else ""
        return seq

    def _prefill(self, row: int, ids: I64) -> None:
        if self._window is not None:
            kept = ids[-self._window :]
            self._win[row] = ZERO_INPUT
            self._win[row, self._window - kept.size :] = kept
            self._filled[row] = kept.size
            return
        hs = [h[row : row + 1] for h in self._h]
        cs = [c[row : row + 1] for c in self._c]
        for state in (*hs, *cs):
            state.fill(0)
        if ids.size > 1:
            prefill = Scratch(self._net, ids.size - 1, 1)
            self._net.arguments(ids[:-1, None], np.zeros(1, np.int64), hs, cs, prefill)()
        self._next[row] = ids[-1]

    def remove(self, key: Hashable) -> str:
        """Drop a sequence (cancelled or timed out) and return its text so far."""
        text = self.text(key)
        self._drop(self._rows[key])
        return text

    def _drop(self, row: int) -> None:
        last = len(self._seqs) - 1
        del self._rows[self._seqs[row].key]
        if row != last:
            for array in self._row_arrays:
                array[row] = array[last]
            self._seqs[row] = self._seqs[last]
            self._rows[self._seqs[row].key] = row
        self._seqs.pop()

    def text(self, key: Hashable, start: int = 0) -> str:
        """Return the text generated so far from character `start` on, without a possible
        start of a stop sequence at its end. Costs what the returned text costs, so a caller
        can fetch only what is new."""
        row = self._rows[key]
        stops = self._seqs[row].params.stop
        # The held-back check looks at the last characters only: those before `start` suffice.
        offset, text = self._text_from(row, max(0, start - max(map(len, stops), default=0)))
        text = text[: len(text) - _held_back(text, stops)]
        return text[max(0, start - offset) :]

    def progress(self, key: Hashable) -> int:
        """Return how many characters the sequence has generated."""
        return int(self._done[self._rows[key]])

    def _text_of(self, row: int) -> str:
        return self._text_from(row, 0)[1]

    def _text_from(self, row: int, start: int) -> tuple[int, str]:
        """Return the text from the piece holding character `start` on, and where it begins."""
        seq = self._seqs[row]
        first = bisect.bisect_right(seq.ends, start)  # the first piece ending after `start`
        offset = seq.ends[first - 1] if first else 0
        pending = int(self._done[row]) % CHUNK
        flushed = "".join(seq.pieces[first:])
        return offset, flushed + "".join(self._vocab[self._chunk[row, :pending]])

    def step(self) -> list[Finished]:
        """Advance every sequence by one character; return the ones that finished."""
        n = len(self._seqs)
        if n == 0:
            return []
        logits = self._forward(n)
        done = self._done[:n]
        uniforms = self._uniform_buffer[:n]
        if self._uniforms is None:
            uniforms_into(self._seed[:n], self._stream[:n], done, uniforms)
        else:
            uniforms[:] = self._uniforms(self._seed[:n], self._stream[:n], done)
        ids = self._ids_buffer[:n]
        sample_into(logits, self._temperature[:n], self._top_k[:n], self._top_p[:n], uniforms, ids)
        column = done % CHUNK
        self._chunk[self._row_index[:n], column] = ids
        done += 1
        self._advance_inputs(n, ids)
        return self._collect(n, ids, column == CHUNK - 1)

    def _forward(self, n: int) -> F32:
        """Run the network for the n active rows; return their logits."""
        bundle = self._passes.get(n)
        if bundle is None:
            if len(self._passes) > 64:
                self._passes.clear()
            bundle = self._passes[n] = self._arguments(n)
        if self._window is not None:
            # Every character re-runs its window from a zero state.
            np.copyto(bundle.args[1], self._win[:n].T)
            np.subtract(self._window, self._filled[:n], out=bundle.args[6])
            for state in (*bundle.args[4], *bundle.args[5]):
                state.fill(0)
        return bundle()

    def _arguments(self, n: int) -> Forward:
        if self._window is None:
            hs = [h[:n] for h in self._h]
            cs = [c[:n] for c in self._c]
            starts = Scratch.view(self._scratch.zero_ids, (n,))
            return self._net.arguments(self._next[None, :n], starts, hs, cs, self._scratch)
        units = self._net.units
        hs = [Scratch.view(flat, (n, u)) for flat, u in zip(self._zero_h, units, strict=True)]
        cs = [Scratch.view(flat, (n, u)) for flat, u in zip(self._zero_c, units, strict=True)]
        ids = Scratch.view(self._win_t, (self._window, n))
        starts = Scratch.view(self._starts, (n,))
        return self._net.arguments(ids, starts, hs, cs, self._scratch)

    def _advance_inputs(self, n: int, ids: I64) -> None:
        if self._window is None:
            self._next[:n] = ids
            return
        window = self._win[:n]
        window[:, :-1] = window[:, 1:]
        window[:, -1] = ids
        np.minimum(self._filled[:n] + 1, self._window, out=self._filled[:n])

    def _collect(self, n: int, ids: I64, full: npt.NDArray[np.bool_]) -> list[Finished]:
        """Flush full chunks, check stop sequences and lengths; drop finished rows."""
        if full.any():
            for row in np.flatnonzero(full).tolist():
                self._seqs[row].add_piece("".join(self._vocab[self._chunk[row]]))
        finished: list[tuple[int, Finished]] = []
        if self._has_stop[:n].any():
            for row in np.flatnonzero(self._has_stop[:n]).tolist():
                seq = self._seqs[row]
                stopped = self._check_stop(row, seq, self.model.vocab[int(ids[row])])
                if stopped is not None:
                    finished.append((row, Finished(seq.key, stopped, FinishReason.STOP)))
        ended = self._done[:n] >= self._length[:n]
        if ended.any():
            stopped_rows = {row for row, _ in finished}
            for row in np.flatnonzero(ended).tolist():
                if row not in stopped_rows:
                    text = self._text_of(row)
                    finished.append((row, Finished(self._seqs[row].key, text, FinishReason.LENGTH)))
        # Drop from the highest row down so moving the last row never moves a finished one.
        for row, _ in sorted(finished, key=lambda item: -item[0]):
            self._drop(row)
        return [item for _, item in finished]

    def _check_stop(self, row: int, seq: _Sequence, piece: str) -> str | None:
        longest = max(len(s) for s in seq.params.stop)
        recent = seq.tail + piece
        for stop in sorted(seq.params.stop, key=len, reverse=True):
            # The stop must end inside the newest piece (a vocabulary entry may be several chars).
            found = recent.find(stop, max(0, len(recent) - len(piece) - len(stop) + 1))
            if found >= 0:
                text = self._text_of(row)
                return text[: len(text) - (len(recent) - found)]
        seq.tail = recent[-(longest - 1) :] if longest > 1 else ""
        return None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Return the length of the longest end of text that could still grow into a stop."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


def generate(
    model: LSTMModel,
    seed: str,
    params: SamplingParams,
    *,
    random_seed: int | None = None,
    n: int = 1,
    unknown: UnknownChars = "error",
) -> Generation:
    """Generate n samples from a seed (empty: the model's default seed) as one batch."""
    if n < 1:
        raise ValueError("n must be >= 1")
    ids = model.encode_seed(seed, unknown)
    chosen = derive_random_seed() if random_seed is None else check_random_seed(random_seed)
    batch = Batch(model, capacity=n)
    for stream in range(n):
        batch.add(stream, ids, params, chosen, stream)
    results: dict[Hashable, Finished] = {}
    while len(batch):
        results.update((item.key, item) for item in batch.step())
    ordered = [results[stream] for stream in range(n)]
    return Generation(
        texts=[item.text for item in ordered],
        finish_reasons=[item.reason for item in ordered],
        random_seed=chosen,
    )


def next_probabilities(model: LSTMModel, seed_ids: Sequence[int], temperature: float = 1.0) -> F32:
    """Return the next-character distribution after feeding seed ids (ZERO_INPUT allowed)."""
    ids = _check_ids(model, seed_ids)
    net = network(model)
    hs = [np.zeros((1, u), np.float32) for u in net.units]
    cs = [np.zeros((1, u), np.float32) for u in net.units]
    if model.mode is Mode.WINDOW:
        assert model.window is not None
        ids = ids[-model.window :]
    scratch = Scratch(net, ids.size, 1)
    logits = net.arguments(ids[:, None], np.zeros(1, np.int64), hs, cs, scratch)()
    probs: F32 = probabilities(logits, np.array([temperature], np.float32))[0]
    return probs


def predict(
    model: LSTMModel, seed: str, temperature: float = 1.0, unknown: UnknownChars = "error"
) -> list[CharProbability]:
    """Return the next-character distribution after a seed, most likely first."""
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    probs = next_probabilities(model, model.encode_seed(seed, unknown), temperature)
    order = np.argsort(-probs, kind="stable")
    return [CharProbability(model.vocab[i], float(probs[i])) for i in order.tolist()]
