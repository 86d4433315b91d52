"""Compiled LSTM kernels whose every output row depends only on that row's inputs.

BLAS libraries pick different code paths for a row depending on the batch size and the row's
position in it (OpenBLAS rounds the same row differently at different positions), so a
sequence would come out differently alone and in a batch. These kernels sum every dot product
in one fixed order (start value, then acc = acc + x * w for k = 0, 1, ...), so a row's bits
never depend on its neighbours, on the batch size or on the thread count. Every product goes
through one of a few generated tiles (4 rows or 1 row, wide or 16 columns), which all fuse
each multiply-add where the CPU has FMA.

Speed comes from the layout rather than from BLAS: weights are packed once into panels of 16
columns read in order (each panel a few rows longer than its depth, see pack()), the products
run in register tiles of 4 rows x 64 columns (1 row x 128 for a single row: enough independent
accumulators to hide the FMA latency), the cell uses a vectorisable exp, and threads split the
batch into row groups that each run the whole pass. The engine's steps run through
shared/engine/steps.py, which calls the row pass forward_rows directly, several steps per call
(one fork-join per call). The threads are OpenMP's, which do not survive fork(): run the
kernels in the process that imported them.
"""

from __future__ import annotations

import os
import types as pytypes
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from shared.engine import compile_cache

Array = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]

# Recurrent activations, as codes the compiled cell understands.
SIGMOID, HARD_SIGMOID, HARD_SIGMOID_K3 = 0, 1, 2
ACTIVATION_CODES = {
    "sigmoid": SIGMOID,
    "hard_sigmoid": HARD_SIGMOID,
    "hard_sigmoid_k3": HARD_SIGMOID_K3,
}
PARALLEL_ROWS = 16  # batches this large use every thread; smaller ones run on one
TILE_COLS = 16  # output widths must be multiples of this (the engine pads its weights)

TILE_ROWS = 4  # rows that share each loaded weight
PANEL_PAD = 4  # zero rows after each packed panel (see pack)
_COLS = 128  # output columns handled together before moving to the next rows
_DEPTH = 256  # inner-product terms per pass over a tile
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_HALF = np.float32(0.5)
_FIFTH = np.float32(0.2)
_SIXTH = np.float32(1.0 / 6.0)
# exp(y) = 2**n * exp(r), r = y - n*ln 2 split in two parts so r is exact; Taylor terms to r**7.
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_ROUND = np.float32(12582912.0)  # 1.5 * 2**23: adding and subtracting it rounds to an integer
_EXP_MIN = np.float32(-87.0)
_EXP_MAX = np.float32(88.0)
_TAYLOR = tuple(np.float32(1.0 / f) for f in (5040, 720, 120, 24, 6, 2, 1, 1))

# Batches run in several threads of one process (one per model): only a thread-safe layer
# (OpenMP or TBB) may run parallel kernels from them; without one the kernels run serially.
numba.config.THREADING_LAYER = "threadsafe"  # type: ignore[attr-defined]
_threads_ok = True
# The step's threads share the machine's cores with other processes (API, broker, other
# workers): OpenMP's default spin-waiting at the end of each step then steals the core from
# the thread still working and can make a step ten times slower. Sleep instead (it costs a
# wake-up, tens of microseconds, per step). Read by OpenMP when it starts, at the first
# threaded step; a value already set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The tiles below keep their accumulators in registers only once LLVM's SLP vectoriser packs
# them into vectors; numba leaves it off unless asked before its first compilation.
numba.config.SLP_VECTORIZE = 1  # type: ignore[attr-defined]
compile_cache.configure()  # before the first cache=True function below


def pack(w: npt.NDArray[Any]) -> Array:
    """Lay out a weight matrix [K, N] as panels [N / 16, K + PANEL_PAD, 16] the tiles read in
    order (rows K and after are zeros that no tile reads).

    A tile reads several panels side by side, one line of each per k. Panels of a power-of-two
    size (K = 256: 16 KB) would put those lines in the same set of the L1 cache, which holds
    only eight lines a set; the padding staggers them (a single row's products, which read
    every weight once, ran 12-19% faster).
    """
    depth, width = w.shape
    if width % TILE_COLS:
        raise ValueError(f"weight width {width} is not a multiple of {TILE_COLS}")
    panels = np.zeros((width // TILE_COLS, depth + PANEL_PAD, TILE_COLS), np.float32)
    panels[:, :depth] = w.reshape(depth, width // TILE_COLS, TILE_COLS).transpose(1, 0, 2)
    return panels


def _tile_source(rows: int, panels: int) -> str:
    """Write out[r0 + i, c0:c0+16p] += x[r0 + i, k0:k1] @ w[k0:k1, c0:c0+16p] for i < rows.

    Straight-line code with one named accumulator per output, so each output is summed as
    acc = acc + x * w for k = k0, k0 + 1, ... in that order whatever vector shape LLVM picks.
    Arrays are flat (w packed in panels of 16 columns and `depth` rows, `panels` of them side
    by side) and indices unsigned, sparing negative-index checks.
    """
    cols = range(TILE_COLS * panels)
    lines = [f"def _tile_{rows}x{panels}(x, width, w, depth, n_cols, out, r0, c0, k0, k1):"]
    for i in range(rows):
        lines.append(f"    o{i} = (r0 + _U({i})) * n_cols + c0")
        lines.append(f"    x{i} = (r0 + _U({i})) * width")
        lines += [f"    a{i}_{j} = out[o{i} + _U({j})]" for j in cols]
    lines.append("    panel = _U(16) * depth")  # elements from one panel to the next
    lines += ["    wk = (c0 * depth) + k0 * _U(16)", "    for k in range(k0, k1):"]
    lines += [f"        b{i} = x[x{i} + k]" for i in range(rows)]
    lines += [
        f"        w{j} = w[wk + _U({j // TILE_COLS}) * panel + _U({j % TILE_COLS})]" for j in cols
    ]
    lines += [f"        a{i}_{j} = a{i}_{j} + b{i} * w{j}" for j in cols for i in range(rows)]
    lines.append("        wk += _U(16)")
    lines += [f"    out[o{i} + _U({j})] = a{i}_{j}" for i in range(rows) for j in cols]
    return "\n".join(lines)


def _compile_tile(rows: int, panels: int) -> Any:
    # Defined in this module, under this file's name, so numba can cache it like the others.
    exec(compile(_tile_source(rows, panels), __file__, "exec"), globals())
    # "contract" lets each acc + x * w become one fused multiply-add: a fifth faster, and the
    # same rounding in every tile, since each product feeds exactly one add in all of them.
    fused = njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
    return fused(globals()[f"_tile_{rows}x{panels}"])


_U = np.uint64
# A vector FMA takes about 4 cycles and two can start per cycle, so a tile needs some eight
# independent accumulator vectors (16 floats each) to keep the units busy: 4 rows x 64
# columns (16 vectors) for batches, 1 row x 128 columns (8) for a single row. The narrow
# tiles cover the columns left over; every tile sums each output in the same order.
_WIDE_PANELS = 4
_ROW_PANELS = 8
_tile_rows = _compile_tile(TILE_ROWS, _WIDE_PANELS)
_tile_rows_narrow = _compile_tile(TILE_ROWS, 1)
_tile_row = _compile_tile(1, _ROW_PANELS)
_tile_row_narrow = _compile_tile(1, 1)


@intrinsic
def _float_from_bits(typingctx, bits):  # type: ignore[no-untyped-def]
    """Reinterpret int32 bits as a float32 (to build 2**n)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _muladd(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """Return a * b + c, fused into one rounding where the CPU has FMA (llvm.fmuladd).

    Fusion is chosen here, at each call, rather than left to the compiler ("contract"): in
    `f * c + i * g` it could fuse either product, and might choose differently in the serial
    and the threaded kernel, which would change a row's bits.
    """

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        f32 = ir.FloatType()
        fnty = ir.FunctionType(f32, [f32, f32, f32])
        name = "llvm.fmuladd.f32"
        fn = builder.module.globals.get(name) or ir.Function(builder.module, fnty, name)
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(inline="always", error_model="numpy")
def exp32(y):  # type: ignore[no-untyped-def]
    """Return exp(y) in float32 with straight-line code the compiler can vectorise (1-2 ulp)."""
    y = y if y > _EXP_MIN else _EXP_MIN
    y = y if y < _EXP_MAX else _EXP_MAX
    n = (y * _LOG2E + _ROUND) - _ROUND
    r = (y - n * _LN2_HI) - n * _LN2_LO
    p = _TAYLOR[0]
    for coefficient in _TAYLOR[1:]:
        p = _muladd(p, r, coefficient)  # type: ignore[call-arg]
    return p * _float_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))  # type: ignore[call-arg]


@njit(inline="always", error_model="numpy")
def _tanh(x):  # type: ignore[no-untyped-def]
    return _F1 - _F2 / (exp32(_F2 * x) + _F1)


@njit(inline="always", error_model="numpy")
def _add_products(x, w, out, r0, r1, c0, c1):  # type: ignore[no-untyped-def]
    """out[r0:r1, c0:c1] += x[r0:r1] @ w[:, c0:c1], term by term in k order."""
    width = np.uint64(x.shape[1])
    depth = np.uint64(w.shape[1])
    n_cols = np.uint64(out.shape[1])
    xf = x.reshape(x.size)
    wf = w.reshape(w.size)
    of = out.reshape(out.size)
    wide = TILE_COLS * _WIDE_PANELS
    row_wide = TILE_COLS * _ROW_PANELS
    for k0 in range(0, x.shape[1], _DEPTH):
        k = np.uint64(k0)
        k1 = np.uint64(min(k0 + _DEPTH, x.shape[1]))
        row = r0
        while row + TILE_ROWS <= r1:
            r = np.uint64(row)
            c = c0
            while c + wide <= c1:
                _tile_rows(xf, width, wf, depth, n_cols, of, r, np.uint64(c), k, k1)
                c += wide
            while c < c1:
                _tile_rows_narrow(xf, width, wf, depth, n_cols, of, r, np.uint64(c), k, k1)
                c += TILE_COLS
            row += TILE_ROWS
        while row < r1:
            r = np.uint64(row)
            c = c0
            while c + row_wide <= c1:
                _tile_row(xf, width, wf, depth, n_cols, of, r, np.uint64(c), k, k1)
                c += row_wide
            while c < c1:
                _tile_row_narrow(xf, width, wf, depth, n_cols, of, r, np.uint64(c), k, k1)
                c += TILE_COLS
            row += 1


@njit(inline="always", error_model="numpy")
def _affine(table, ids, x, wx, h, wh, out, r0, r1):  # type: ignore[no-untyped-def]
    """out[r0:r1] = table[ids[r0:r1]] + x[r0:r1] @ wx + h[r0:r1] @ wh, a block of columns at
    a time (its weights stay in cache for all the rows)."""
    width = out.shape[1]
    for c0 in range(0, width, _COLS):
        c1 = min(c0 + _COLS, width)
        for r in range(r0, r1):
            out[r, c0:c1] = table[ids[r], c0:c1]
        _add_products(x, wx, out, r0, r1, c0, c1)
        _add_products(h, wh, out, r0, r1, c0, c1)


@njit(inline="always", error_model="numpy")
def _clip01(x):  # type: ignore[no-untyped-def]
    x = x if x > _F0 else _F0
    return x if x < _F1 else _F1


@njit(inline="always", error_model="numpy")
def _gate(x, kind):  # type: ignore[no-untyped-def]
    if kind == HARD_SIGMOID:
        return _clip01(_FIFTH * x + _HALF)
    if kind == HARD_SIGMOID_K3:
        return _clip01(x * _SIXTH + _HALF)
    return _F1 / (_F1 + exp32(-x))


@njit(inline="always", error_model="numpy")
def _cell(z, c, h, kind):  # type: ignore[no-untyped-def]
    """Update one row's state c, h from its gate pre-activations z (i, f, g, o blocks)."""
    units = h.shape[0]
    for j in range(units):
        i = _gate(z[j], kind)
        f = _gate(z[units + j], kind)
        g = _tanh(z[2 * units + j])
        o = _gate(z[3 * units + j], kind)
        c[j] = _muladd(f, c[j], i * g)  # type: ignore[call-arg]
        h[j] = o * _tanh(c[j])


_BLOCK_ROWS = 256  # rows (steps x n) of an upper layer's input product computed together


def block_size(steps: int, rows: int) -> int:
    """Return the rows of gates an upper layer precomputes for `steps` steps of up to `rows`
    rows at a time (the size of its scratch buffer; 0 for a single step)."""
    return 0 if steps <= 1 else min(steps * rows, max(rows, _BLOCK_ROWS))


@njit(inline="always", error_model="numpy")
def _cell_of_kind(z, c, h, kind):  # type: ignore[no-untyped-def]
    # One loop per activation: a test of `kind` inside the loop would make the vectorised
    # loop compute every activation and select one.
    if kind == SIGMOID:
        _cell(z, c, h, SIGMOID)
    elif kind == HARD_SIGMOID:
        _cell(z, c, h, HARD_SIGMOID)
    else:
        _cell(z, c, h, HARD_SIGMOID_K3)


@njit(inline="always", error_model="numpy")
def _layer_in_blocks(  # type: ignore[no-untyped-def]
    table, xs, wx, h, wh, c, seq, pre, no_input, no_hw, zero_ids, starts, kind
):  # fmt: skip
    """Run one upper layer over all steps, its input product a block of steps at a time.

    The input product of steps t0..t1 (h of the layer below, all known already) is one
    product of (t1 - t0) x n rows, run by the batch tiles instead of n rows per step; the
    recurrent product is then added per step into the same buffer. Each output still starts
    at the bias and adds x * w, then h * w, term by term in k order: the bits of the
    step-by-step pass.
    """
    steps, n, width = xs.shape[0], xs.shape[1], table.shape[1]
    block = max(1, _BLOCK_ROWS // n)
    flat_ids = zero_ids.reshape(zero_ids.size)
    for t0 in range(0, steps, block):
        t1 = min(steps, t0 + block)
        count = (t1 - t0) * n
        x = xs[t0:t1].reshape((count, xs.shape[2]))
        zb = pre[: count * width].reshape((count, width))
        no_h = no_input.reshape((count, 0))
        _affine(table, flat_ids[:count], x, wx, no_h, no_hw, zb, 0, count)
        for t in range(t0, t1):
            z = zb[(t - t0) * n : (t - t0 + 1) * n]
            for c0 in range(0, width, _COLS):
                _add_products(h, wh, z, 0, n, c0, min(c0 + _COLS, width))
            for r in range(n):
                if t >= starts[r]:
                    _cell_of_kind(z[r], c[r], h[r], kind)
                seq[t, r] = h[r]


@njit(nogil=True, cache=True, error_model="numpy")
def forward_rows(  # type: ignore[no-untyped-def]
    r0, r1, tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids, kind,
    out_table, out_w, no_h, no_hw, logits, pres, no_hws,
):  # fmt: skip
    """Run the forward pass (see _forward) for rows r0:r1 alone."""
    steps = ids.shape[0]
    whole = r0 == 0 and r1 == ids.shape[1]
    for layer in range(len(tables)):
        h, c, z = hs[layer][r0:r1], cs[layer][r0:r1], zs[layer][r0:r1]
        if layer > 0 and steps > 1 and whole:
            _layer_in_blocks(
                tables[layer], seqs[layer - 1], wx[layer], h, wh[layer], c, seqs[layer],
                pres[layer], no_input, no_hws[layer], zero_ids, starts, kind,
            )  # fmt: skip
            continue
        layer_ids = ids if layer == 0 else zero_ids
        xs = no_input if layer == 0 else seqs[layer - 1]
        for t in range(steps):
            x = xs[t][r0:r1]
            row_ids = layer_ids[t][r0:r1]
            _affine(tables[layer], row_ids, x, wx[layer], h, wh[layer], z, 0, r1 - r0)
            seq = seqs[layer][t][r0:r1]
            for r in range(r1 - r0):
                if t >= starts[r0 + r]:
                    _cell_of_kind(z[r], c[r], h[r], kind)
                seq[r] = h[r]
    top = hs[len(hs) - 1][r0:r1]
    output_rows(top, logits[r0:r1], out_table, out_w, no_h[r0:r1], no_hw, zero_ids[0][r0:r1])


@njit(inline="always", error_model="numpy")
def output_rows(top, out, out_table, out_w, no_h, no_hw, zero_ids):  # type: ignore[no-untyped-def]
    """out = out_table + top @ out_w for the rows of top [n, H] (no_h [n, 0], zero_ids [n])."""
    _affine(out_table, zero_ids, top, out_w, no_h, no_hw, out, 0, top.shape[0])


@njit(inline="always", error_model="numpy")
def step_lanes(  # type: ignore[no-untyped-def]
    lane0, work0, lanes, tables, ids, wx, wh, hs, cs, zs, seqs, no_input, zero_ids, kind
):  # fmt: skip
    """Run one step of the state rows lane0:lane0+lanes (the first layer's input ids in
    ids[0, work0:work0+lanes]), using the scratch rows work0:work0+lanes of zs and seqs.

    The rows of a window model's sequence (see steps.py): the same tiles and cell as
    forward_rows, so each row gets the bits it would get in any pass; the scratch rows are
    a thread's own, so one small block of gates stays in cache for all its sequences.
    """
    last = len(tables) - 1
    for layer in range(len(tables)):
        h = hs[layer][lane0 : lane0 + lanes]
        c = cs[layer][lane0 : lane0 + lanes]
        z = zs[layer][work0 : work0 + lanes]
        xs = no_input if layer == 0 else seqs[layer - 1]
        layer_ids = ids if layer == 0 else zero_ids
        x = xs[0][work0 : work0 + lanes]
        row_ids = layer_ids[0][work0 : work0 + lanes]
        _affine(tables[layer], row_ids, x, wx[layer], h, wh[layer], z, 0, lanes)
        for r in range(lanes):
            _cell_of_kind(z[r], c[r], h[r], kind)
        if layer < last:
            seq = seqs[layer][0][work0 : work0 + lanes]
            for r in range(lanes):
                seq[r] = h[r]


@njit(inline="always", error_model="numpy")
def row_group(n, groups, group, unit=TILE_ROWS):  # type: ignore[no-untyped-def]
    """Return rows [r0, r1) of one of `groups` groups of n rows, in whole units of rows
    (tiles of rows unless told)."""
    size = ((n + groups - 1) // groups + unit - 1) // unit * unit
    r0 = group * size
    return r0, min(n, r0 + size)


def _forward(  # type: ignore[no-untyped-def]
    tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids, kind,
    out_table, out_w, no_h, no_hw, logits, pres, no_hws, chunks,
):  # fmt: skip
    """Run every LSTM layer over T steps for n rows, then the output layer on the last h.

    Per layer l (tuples): tables[l] [R, 4H] and its row ids (ids [T, n] for the first layer,
    which gathers its input product, zero_ids for the others, which point at their bias);
    wx[l], wh[l]: packed input and recurrent kernels; hs[l], cs[l] [n, H]: the state,
    updated in place; zs[l] [n, 4H]: scratch; seqs[l] [T, n, H]: h after every step, the
    input of the next layer (the first layer's input is no_input, [T, n, 0]). starts [n]:
    a row's first step (earlier steps leave its state alone). logits [n, V] = out_table +
    h_last @ out_w (no_h, no_hw: the empty recurrent part of that product). pres[l]: flat
    scratch for block_size(T, n) rows of an upper layer's gates when one thread runs all
    rows over several steps (a long seed), no_hws[l]: empty weights (pack of [0, 4H]) for
    that input product's missing recurrent part. Rows are split into `chunks` groups that
    each thread runs through the whole pass, with no barrier.
    """
    n = ids.shape[1]
    for chunk in prange(chunks):
        r0, r1 = row_group(n, chunks, chunk)
        if r0 < r1:
            forward_rows(
                r0, r1, tables, ids, wx, wh, hs, cs, starts, zs, seqs, no_input, zero_ids,
                kind, out_table, out_w, no_h, no_hw, logits, pres, no_hws,
            )  # fmt: skip


# The same code compiled twice: threads pay off only for larger batches, and both variants
# perform identical operations per row, so which one runs never changes a result.
def variant(func: Any, suffix: str, parallel: bool) -> Any:
    """Compile a copy of func under its own name (numba caches by name, not by options)."""
    copy = pytypes.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix)
    copy.__qualname__ = func.__qualname__ + suffix
    return njit(parallel=parallel, nogil=True, cache=True, error_model="numpy")(copy)


_forward_serial = variant(_forward, "_serial", parallel=False)
_forward_parallel = variant(_forward, "_parallel", parallel=True)


def check_shapes(out: Array, table: Array, *pairs: tuple[Array, Array]) -> None:
    """Refuse arrays that would make the tiles read or write past an array's end."""
    width = out.shape[-1]
    if table.shape[1] != width:
        raise ValueError(f"table width {table.shape[1]} differs from the output's {width}")
    for x, packed in pairs:
        if packed.shape != (width // TILE_COLS, x.shape[-1] + PANEL_PAD, TILE_COLS):
            raise ValueError(f"packed weights {packed.shape} do not fit inputs {x.shape}")
    if width % TILE_COLS or not out.flags.c_contiguous:
        raise ValueError(f"outputs need C order and a width that is a multiple of {TILE_COLS}")


def forward(*args: Any, rows: int, parallel: bool | None = None) -> None:
    """Run _forward on arguments already checked by the caller; threads for `rows` >= 16."""
    run_split(_forward_serial, _forward_parallel, *args, rows=rows, parallel=parallel)


def run_split(serial: Any, threaded: Any, *args: Any, rows: int, parallel: bool | None) -> None:
    """Call a kernel split into row groups: `threaded` over every thread for `rows` >= 16
    (or as `parallel` says), else `serial` in one group. The group count is the last argument."""
    global _threads_ok
    wanted = rows >= PARALLEL_ROWS if parallel is None else parallel
    threads = numba.get_num_threads() if wanted and _threads_ok else 1
    if threads > 1:
        try:
            threaded(*args, threads)
            return
        except ValueError as error:  # no thread-safe threading layer on this machine
            if "threading layer" not in str(error):
                raise
            _threads_ok = False
    serial(*args, 1)


def thread_count() -> int:
    """Return how many threads the compiled kernels use."""
    return int(numba.get_num_threads())
