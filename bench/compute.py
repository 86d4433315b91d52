"""The machine's compute bound for character generation: GEMM rate / FLOPs per character.

Both engine benchmarks divide a model's FLOPs per character into numpy's float32 GEMM rate
(1024 x 1024 x 1024, the size at which its BLAS runs fastest), measured in this run with as
many BLAS threads as the engine has. A batched step cannot beat that rate: every FLOP it
counts is a matrix product at most as efficient as a large GEMM. At one stream the bound that
matters is memory: `read_rate` times how fast one core reads as many bytes as a step's weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from numba import njit

from shared.engine.model import LSTMModel, Mode

GEMM_SIZE = 1024
ROOT = Path(__file__).resolve().parents[1]
STEAL = 7  # /proc/stat's cpu fields: user nice system idle iowait irq softirq steal
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def flops_per_char(model: LSTMModel) -> int:
    """Return the multiply-adds x2 one character needs: what a batched step must compute.

    The first layer's input product is a table lookup (a row per character, one-hot or
    embedding folded in), so it costs no FLOPs; every recurrent product, every upper layer's
    input product and the output layer count. A window model runs its whole window per
    character.
    """
    step = 0
    for index, layer in enumerate(model.layers):
        inputs = 0 if index == 0 else layer.input_size
        step += 2 * (inputs + layer.units) * 4 * layer.units
    steps = model.window if model.mode is Mode.WINDOW and model.window else 1
    rows, columns = model.output_kernel.shape
    return steps * step + 2 * int(rows) * int(columns)


def weight_bytes(model: LSTMModel) -> int:
    """Return the bytes of weights one step of one stream reads: each counted multiply-add
    reads one float32 weight once (the first layer's input is a table row)."""
    steps = model.window if model.mode is Mode.WINDOW and model.window else 1
    return 2 * flops_per_char(model) // steps


@njit(fastmath=True, nogil=True)
def _total(values: npt.NDArray[np.float32]) -> float:
    # fastmath lets LLVM vectorise the sum (any order will do: only its speed is used).
    total = np.float32(0.0)
    for index in range(values.size):
        total += values[index]
    return float(total)


def read_rate(nbytes: int, seconds: float) -> float:
    """Return the best rate, in bytes/s, at which one thread reads an array of `nbytes`
    again and again (from whichever cache holds it): what one stream's step on one core,
    which reads every weight once, cannot beat."""
    values = np.ones(max(16, nbytes // 4), np.float32)
    _total(values)  # compile, and bring the array into cache
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        _total(values)
        best = min(best, time.perf_counter() - started)
    return values.nbytes / best


def gemm_rate(threads: int, seconds: float) -> float:
    """Return numpy's best float32 GEMM rate in FLOP/s on `threads` BLAS threads.

    Measured in a fresh process, since BLAS reads its thread count when it loads; the best
    of many short rounds, so that other work on the machine does not lower the bound.
    """
    env = {**os.environ, **{name: str(threads) for name in BLAS_THREAD_VARIABLES}}
    command = [sys.executable, "-m", "bench.compute", str(seconds)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(done.stdout)


class Steal:
    """CPU time the hypervisor gave to other machines since this was made (Linux /proc/stat).

    On a shared virtual machine this is the main source of noise: a step split over all
    cores waits for the one that was taken away.
    """

    def __init__(self) -> None:
        self._start = _cpu_times()

    def share(self) -> float | None:
        """Return the stolen share of all CPU time since the start, or None if unknown."""
        now = _cpu_times()
        if now is None or self._start is None:
            return None
        spent = [b - a for a, b in zip(self._start, now, strict=True)]
        return spent[STEAL] / max(1, sum(spent))


def _cpu_times() -> list[int] | None:
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    return [int(value) for value in fields[1 : STEAL + 2]]


def _measure(seconds: float) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    b = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # start the BLAS threads
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - started)
    return 2 * GEMM_SIZE**3 / best


if __name__ == "__main__":  # the child process of gemm_rate()
    print(_measure(float(sys.argv[1])))
