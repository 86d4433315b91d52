"""Several generation steps in one compiled call: the forward pass, the draw, the next input.

A step of a small batch costs more in Python (a dozen calls, each unboxing its arrays) than in
arithmetic; here a thread runs its rows through every step of a call on its own, with no
fork-join between steps. Each row goes through the same row pass (`kernels.forward_rows`)
and the same draw (`sampling.sample_row`) at every step, so a call of k steps gives the bits
of k calls of one step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from shared.engine import kernels
from shared.engine.sampling import sample_row, uniform_at


@njit(nogil=True, cache=True, error_model="numpy")
def _run_rows(  # type: ignore[no-untyped-def]
    r0, r1, tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids, kind,
    out_table, out_w, no_h, no_hw, logits, pres, no_hws,
    steps, vocab, window, next_ids, win, filled, temperature, top_k, top_p,
    seed, stream, done, uniforms, chunk, fill,
):  # fmt: skip
    """Run rows r0:r1 through `steps` steps (see _run)."""
    probs = np.empty(vocab, np.float32)
    for s in range(steps):
        for r in range(r0, r1):
            if window:  # the last `window` ids from a zero state, real ones from starts[r]
                for t in range(window):
                    ids[t, r] = win[r, t]
                starts[r] = window - filled[r]
                for layer in range(len(hs)):
                    hs[layer][r] = 0
                    cs[layer][r] = 0
            else:
                ids[0, r] = next_ids[r]
        kernels.forward_rows(
            r0, r1, tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids, kind,
            out_table, out_w, no_h, no_hw, logits, pres, no_hws,
        )  # fmt: skip
        for r in range(r0, r1):
            given = uniforms.shape[0] > 0
            u = uniforms[s, r] if given else uniform_at(seed[r], stream[r], done[r])
            pick = sample_row(logits[r, :vocab], temperature[r], top_k[r], top_p[r], u, probs)
            chunk[r, fill[r] + s] = pick
            done[r] += 1
            if window:
                for t in range(window - 1):
                    win[r, t] = win[r, t + 1]
                win[r, window - 1] = pick
                filled[r] = min(filled[r] + 1, window)
            else:
                next_ids[r] = pick


def _run(  # type: ignore[no-untyped-def]
    tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids, kind,
    out_table, out_w, no_h, no_hw, logits, pres, no_hws,
    steps, vocab, window, next_ids, win, filled, temperature, top_k, top_p, seed,
    stream, done, uniforms, chunk, fill, groups,
):  # fmt: skip
    """Advance n rows by `steps` characters, in `groups` groups of rows run in parallel.

    The first arguments are those of kernels._forward for the n rows (Network.arguments),
    whose ids this fills: next_ids[n] (stateful: the next input) or, with `window` > 0, the
    row's last ids win[n, window] of which filled[n] are real, fed from a zero state every
    step. Each row draws with its temperature, top_k, top_p and the uniform of (seed, stream,
    done) from the counter-based stream, or uniforms[steps, n] when that is not empty. The
    ids drawn go to chunk[r, fill[r] + s]; done[r] counts them.
    """
    n = next_ids.shape[0]
    for group in prange(groups):
        r0, r1 = kernels.row_group(n, groups, group)
        if r0 < r1:
            _run_rows(
                r0, r1, tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids,
                kind, out_table, out_w, no_h, no_hw, logits, pres, no_hws,
                steps, vocab, window, next_ids, win, filled, temperature,
                top_k, top_p, seed, stream, done, uniforms, chunk, fill,
            )  # fmt: skip


_run_serial = kernels.variant(_run, "_serial", parallel=False)
_run_parallel = kernels.variant(_run, "_parallel", parallel=True)


def run(*args: Any, rows: int) -> None:
    """Run _run on arguments the caller checked; threads for `rows` >= kernels.PARALLEL_ROWS."""
    kernels.run_split(_run_serial, _run_parallel, *args, rows=rows, parallel=None)
