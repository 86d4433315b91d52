"""Generate text: a batch of sequences of one model advancing one character per step."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.engine import steps as compiled_steps
from shared.engine.model import ZERO_INPUT, LSTMModel, Mode, UnknownChars
from shared.engine.network import Forward, Scratch, network
from shared.engine.sampling import (
    MAX_RANDOM_SEED,
    SamplingParams,
    check_random_seed,
    derive_random_seed,
    probabilities,
)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
# Maps (random seeds, streams, steps) of the active rows to one uniform each.
UniformSource = Callable[[U64, U64, I64], npt.NDArray[np.float64]]
CHUNK = 256  # generated ids kept per row before they are decoded into text
MAX_STEPS = 64  # characters one call of Batch.step may generate per sequence


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
        self._uniforms = uniforms  # None: the counter-based stream (compiled)
        self._no_uniforms = np.zeros((0, 0), np.float64)
        self.last_steps = 0  # characters per sequence of the latest step call
        self._window = model.window if model.mode is Mode.WINDOW else None
        # A window model's sequence holds `window` states, its lanes (see steps.py).
        lanes = self._window or 1
        self._scratch = Scratch(self._net, 1, capacity * lanes)
        self._vocab = np.array(model.vocab, dtype=object)
        self._seqs: list[_Sequence] = []  # by row; rows 0..len-1 are active
        self._rows: dict[Hashable, int] = {}
        units = self._net.units
        self._h = [np.zeros((capacity, lanes, u), np.float32) for u in units]
        self._c = [np.zeros((capacity, lanes, u), np.float32) for u in units]
        self._next = np.zeros(capacity, np.int64)  # the next input id: the latest character
        self._lane = np.zeros(capacity, np.int64)  # window: the oldest lane
        self._lane_ids = np.zeros(capacity * lanes, np.int64)  # the first layer's input ids
        self._temperature = np.zeros(capacity, np.float32)
        self._top_k = np.zeros(capacity, np.int64)
        self._top_p = np.ones(capacity, np.float32)
        self._length = np.zeros(capacity, np.int64)
        self._seed = np.zeros(capacity, np.uint64)
        self._stream = np.zeros(capacity, np.uint64)
        self._done = np.zeros(capacity, np.int64)  # characters generated
        # A step call writes past CHUNK into the spare columns; full chunks are then decoded.
        self._chunk = np.zeros((capacity, CHUNK + MAX_STEPS), np.int64)
        self._fill = np.zeros(capacity, np.int64)  # where the next id goes in the row's chunk
        self._has_stop = np.zeros(capacity, np.bool_)
        self._passes: dict[int, Forward] = {}  # checked pass arguments by active row count
        self._row_arrays: list[npt.NDArray[Any]] = [
            *self._h, *self._c, self._next, self._lane, self._temperature,
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
        """Feed all ids but the last, which the first step feeds.

        A window model's lanes are left as the steps would have left them: lane j < m (m the
        ids fed, at most window - 1) was cleared after the j-th of them and read those after
        it, the others read them all, and lane m is the oldest.
        """
        hs = [h[row] for h in self._h]
        cs = [c[row] for c in self._c]
        for state in (*hs, *cs):
            state.fill(0)
        if self._window is not None:
            ids = ids[-self._window :]
        fed = ids.size - 1
        if fed:
            lanes = hs[0].shape[0]
            starts = np.zeros(lanes, np.int64)
            if self._window is not None:
                starts[:fed] = np.arange(1, fed + 1)
            feed = np.repeat(ids[:-1, None], lanes, axis=1)
            prefill = Scratch(self._net, fed, lanes)
            self._net.arguments(feed, starts, hs, cs, prefill)()
        self._lane[row] = fed if self._window is not None else 0
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

    def step(self, steps: int = 1) -> list[Finished]:
        """Advance every sequence by `steps` characters, or fewer if one would pass its
        length; return the ones that finished. Any split of a sequence's steps into calls
        generates the same text."""
        n = len(self._seqs)
        if n == 0:
            return []
        if isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
        done = self._done[:n]
        steps = min(steps, int((self._length[:n] - done).min()))
        fill = self._fill[:n]
        np.remainder(done, CHUNK, out=fill)
        uniforms = self._no_uniforms
        if self._uniforms is not None:
            seeds, streams = self._seed[:n], self._stream[:n]
            uniforms = np.stack([self._uniforms(seeds, streams, done + s) for s in range(steps)])
        self.last_steps = steps
        # One window sequence is a batch of its lanes, run on one thread; more use them all.
        rows = n * self._window if self._window and n > 1 else n
        compiled_steps.run(
            *self._pass(n).args, steps, self.model.vocab_size, self._window or 0,
            self._next[:n], self._lane[:n], self._temperature[:n], self._top_k[:n],
            self._top_p[:n], self._seed[:n], self._stream[:n], done, uniforms,
            self._chunk[:n], fill, rows=rows,
        )  # fmt: skip
        return self._collect(n, fill, steps)

    def _pass(self, n: int) -> Forward:
        """Return the checked forward-pass arguments for the n active rows."""
        bundle = self._passes.get(n)
        if bundle is None:
            if len(self._passes) > 64:
                self._passes.clear()
            bundle = self._passes[n] = self._arguments(n)
        return bundle

    def _arguments(self, n: int) -> Forward:
        rows = n * (self._window or 1)  # rows of state: sequences, or their lanes
        hs = [h[:n].reshape(rows, h.shape[2]) for h in self._h]
        cs = [c[:n].reshape(rows, c.shape[2]) for c in self._c]
        ids = Scratch.view(self._lane_ids, (1, rows))
        starts = Scratch.view(self._scratch.zero_ids, (rows,))
        return self._net.arguments(ids, starts, hs, cs, self._scratch)

    def _collect(self, n: int, fill: I64, steps: int) -> list[Finished]:
        """Decode full chunks, check stop sequences and lengths; drop finished rows."""
        stop_rows = np.flatnonzero(self._has_stop[:n]).tolist()
        new_ids = {
            row: self._chunk[row, fill[row] : fill[row] + steps].tolist() for row in stop_rows
        }
        for row in np.flatnonzero(fill + steps >= CHUNK).tolist():
            chunk = self._chunk[row]
            self._seqs[row].add_piece("".join(self._vocab[chunk[:CHUNK]]))
            over = int(fill[row]) + steps - CHUNK
            chunk[:over] = chunk[CHUNK : CHUNK + over]
        finished: dict[int, Finished] = {}
        for row in stop_rows:
            seq = self._seqs[row]
            pieces = [self.model.vocab[i] for i in new_ids[row]]
            for s, piece in enumerate(pieces):
                stopped = self._check_stop(row, seq, piece, sum(map(len, pieces[s + 1 :])))
                if stopped is not None:
                    finished[row] = Finished(seq.key, stopped, FinishReason.STOP)
                    break
        for row in np.flatnonzero(self._done[:n] >= self._length[:n]).tolist():
            if row not in finished:
                text = self._text_of(row)
                finished[row] = Finished(self._seqs[row].key, text, FinishReason.LENGTH)
        # Drop from the highest row down so moving the last row never moves a finished one.
        for row in sorted(finished, reverse=True):
            self._drop(row)
        return list(finished.values())

    def _check_stop(self, row: int, seq: _Sequence, piece: str, after: int) -> str | None:
        """Look for a stop ending in `piece`, followed by `after` characters generated since."""
        longest = max(len(s) for s in seq.params.stop)
        recent = seq.tail + piece
        for stop in sorted(seq.params.stop, key=len, reverse=True):
            # The stop must end inside the newest piece (a vocabulary entry may be several chars).
            found = recent.find(stop, max(0, len(recent) - len(piece) - len(stop) + 1))
            if found >= 0:
                text = self._text_of(row)
                return text[: len(text) - after - (len(recent) - found)]
        seq.tail = recent[-(longest - 1) :] if longest > 1 else ""
        return None


class Pacer:
    """Steps a batch in calls of about `budget_s` seconds: long enough that what each call
    costs besides its steps (Python, waking the threads, waiting for the slower one) is
    small, short enough that a sequence waiting to join (or a cancel) is taken in soon.
    Calls of one step for batches whose step takes that long.

    16 ms: against 4 ms, large batches gain a tenth to a fifth (ml5_bolano at 256 streams
    runs 5 steps a call instead of 1); a join waits at most one call, well inside the
    output flush interval (0.1 s).
    """

    def __init__(self, budget_s: float = 0.016) -> None:
        self.budget_s = budget_s
        self.steps = 1
        self._per_step = 0.0  # seconds, a moving average
        self._rows = 0  # sequences in the batch at the latest call

    def step(self, batch: Batch) -> list[Finished]:
        """Run one call of batch.step; return the sequences that finished."""
        if len(batch) > 2 * self._rows:  # a step costs more now: measure it again
            self.steps, self._per_step = 1, 0.0
        self._rows = len(batch)
        started = time.perf_counter()
        finished = batch.step(self.steps)
        if batch.last_steps:
            seconds = (time.perf_counter() - started) / batch.last_steps
            self._per_step = seconds if not self._per_step else 0.7 * self._per_step + 0.3 * seconds
            steps = self.budget_s / max(self._per_step, 1e-9)
            self.steps = max(1, min(MAX_STEPS, int(steps)))
        return finished


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
        results.update((item.key, item) for item in batch.step(MAX_STEPS))
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
