"""Several generation steps in one compiled call: the forward pass, the draw, the next input.

A step of a small batch costs more in Python (a dozen calls, each unboxing its arrays) than in
arithmetic; here a thread runs its rows through every step of a call on its own, with no
fork-join between steps. Each row goes through the same row pass (`kernels.forward_rows`)
and the same draw (`sampling.sample_row`) at every step, so a call of k steps gives the bits
of k calls of one step.

A window model reads the last W characters from a zero state for every character it writes:
W steps in a row for one character, each too small to keep the FMA units busy. Its windows
are pipelined instead. A sequence holds W states ("lanes"), lane j started W - j characters
ago; every step feeds the newest character to all W lanes at once (a batch of W rows, the
first layer's input the same for all), the oldest lane has then read its whole window and
gives the next character's logits, and is cleared to start the next window. A lane does
exactly the steps of its window from a zero state, through the same tiles and cell, so the
text is that of running each window on its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from shared.engine import kernels
from shared.engine.sampling import sample_row, uniform_at


@njit(inline="always", error_model="numpy")
def _draw(  # type: ignore[no-untyped-def]
    r, s, logits, vocab, temperature, top_k, top_p, seed, stream, done, uniforms, chunk,
    fill, probs,
):  # fmt: skip
    """Draw row r's character of step s from logits[r]; record it; return it."""
    given = uniforms.shape[0] > 0
    u = uniforms[s, r] if given else uniform_at(seed[r], stream[r], done[r])
    pick = sample_row(logits[r, :vocab], temperature[r], top_k[r], top_p[r], u, probs)
    chunk[r, fill[r] + s] = pick
    done[r] += 1
    return pick


@njit(nogil=True, cache=True, error_model="numpy")
def _run_rows(  # type: ignore[no-untyped-def]
    r0, r1, tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids, kind,
    out_table, out_w, no_h, no_hw, logits, pres, no_hws,
    steps, vocab, window, next_ids, lane, temperature, top_k, top_p,
    seed, stream, done, uniforms, chunk, fill,
):  # fmt: skip
    """Run rows r0:r1 through `steps` steps (see _run)."""
    probs = np.empty(vocab, np.float32)
    top = hs[len(hs) - 1]
    for s in range(steps):
        if window:
            work0 = r0 * window  # this thread's scratch rows
            for r in range(r0, r1):
                for j in range(window):
                    ids[0, work0 + j] = next_ids[r]
                kernels.step_lanes(
                    r * window, work0, window, tables, ids, wx, wh, hs, cs, zs, seqs,
                    no_input, zero_ids, kind,
                )  # fmt: skip
                oldest = r * window + lane[r]
                kernels.output_rows(
                    top[oldest : oldest + 1], logits[r : r + 1], out_table, out_w,
                    no_h[r : r + 1], no_hw, zero_ids[0][r : r + 1],
                )  # fmt: skip
                next_ids[r] = _draw(
                    r, s, logits, vocab, temperature, top_k, top_p, seed, stream, done,
                    uniforms, chunk, fill, probs,
                )  # fmt: skip
                for layer in range(len(hs)):
                    hs[layer][oldest] = 0
                    cs[layer][oldest] = 0
                lane[r] = (lane[r] + 1) % window
            continue
        for r in range(r0, r1):
            ids[0, r] = next_ids[r]
        kernels.forward_rows(
            r0, r1, tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids, kind,
            out_table, out_w, no_h, no_hw, logits, pres, no_hws,
        )  # fmt: skip
        for r in range(r0, r1):
            next_ids[r] = _draw(
                r, s, logits, vocab, temperature, top_k, top_p, seed, stream, done, uniforms,
                chunk, fill, probs,
            )  # fmt: skip


def _run(  # type: ignore[no-untyped-def]
    tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids, kind,
    out_table, out_w, no_h, no_hw, logits, pres, no_hws,
    steps, vocab, window, next_ids, lane, temperature, top_k, top_p, seed,
    stream, done, uniforms, chunk, fill, groups,
):  # fmt: skip
    """Advance n sequences by `steps` characters, in `groups` groups run in parallel.

    The first arguments are those of kernels._forward (Network.arguments), for n rows of
    state (stateful) or n x window (a window model: sequence r owns rows r * window + j, its
    lanes, and lane[r] is its oldest). next_ids[n]: each sequence's next input, its latest
    character. Each sequence draws with its temperature, top_k, top_p and the uniform of
    (seed, stream, done) from the counter-based stream, or uniforms[steps, n] when that is
    not empty. The ids drawn go to chunk[r, fill[r] + s]; done[r] counts them.
    """
    n = next_ids.shape[0]
    for group in prange(groups):
        # A window model's sequence is already a batch of rows: split by sequence.
        r0, r1 = kernels.row_group(n, groups, group, 1 if window else kernels.TILE_ROWS)
        if r0 < r1:
            _run_rows(
                r0, r1, tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids,
                kind, out_table, out_w, no_h, no_hw, logits, pres, no_hws,
                steps, vocab, window, next_ids, lane, temperature,
                top_k, top_p, seed, stream, done, uniforms, chunk, fill,
            )  # fmt: skip


_run_serial = kernels.variant(_run, "_serial", parallel=False)
_run_parallel = kernels.variant(_run, "_parallel", parallel=True)


def run(*args: Any, rows: int) -> None:
    """Run _run on arguments the caller checked; threads for `rows` >= kernels.PARALLEL_ROWS."""
    kernels.run_split(_run_serial, _run_parallel, *args, rows=rows, parallel=None)
