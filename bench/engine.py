"""Measure the engine: chars/s per model and stream count, against plain numpy and the bound.

Run from the repository root: `.venv/bin/python bench/engine.py [--quick]`. It reads the
reference models in ../shared/models in place.

- engine: characters generated per second by one Batch holding N streams (ml5_darwin,
  ml5_bolano: stateful, one step per character; jessvb_nietzsche: window model run exactly
  as the original, 40 LSTM steps from zero state per character).
- numpy: the plain numpy loop of bench/baseline.py on the same model and streams, run in
  the same process, interleaved with the engine round by round (7 rounds each), so both see
  the same machine; the ratio is the median of the rounds' ratios.
- Compute bound: the machine's float32 GEMM rate on the engine's threads, measured in this
  run, divided by the matrix FLOPs one character needs (bench/compute.py).
- One stream's ceiling (stateful models): the bytes of weights a step reads, over the rate at
  which one core reads an array that size (bench/compute.py): what one thread cannot beat.
- Keras loop: the Keras example's own algorithm on jessvb_nietzsche rebuilt as a Keras model
  from the loaded weights: one-hot window, `model.predict` per character.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.baseline import NumpyLoop  # noqa: E402
from bench.compute import (  # noqa: E402
    GEMM_SIZE,
    Steal,
    flops_per_char,
    gemm_rate,
    read_rate,
    weight_bytes,
)
from shared.engine import kernels  # noqa: E402
from shared.engine.batch import Batch, Pacer  # noqa: E402
from shared.engine.loaders import load_model  # noqa: E402
from shared.engine.model import LSTMModel, Mode  # noqa: E402
from shared.engine.sampling import SamplingParams  # noqa: E402

MODELS = ("ml5_darwin", "ml5_bolano", "jessvb_nietzsche")
STREAMS = (1, 4, 16, 64, 256)
ROUNDS = 7


def shared_models() -> Path:
    """Return ../shared/models, or exit with a clear message."""
    folder = (ROOT / ".." / "shared" / "models").resolve()
    if not folder.is_dir():
        sys.exit(f"bench/engine.py: {folder} not found (the reference models)")
    return folder


def engine_batch(model: LSTMModel, streams: int) -> Batch:
    """Return a batch of N streams that will not finish during the benchmark."""
    batch = Batch(model, capacity=streams)
    seed = model.encode("The sun rose over the hills and the ", unknown="drop")
    params = SamplingParams(length=10**9, temperature=0.8)
    for stream in range(streams):
        batch.add(stream, seed, params, random_seed=1, stream=stream)
    return batch


def rate(step: Callable[[], int], streams: int, seconds: float) -> float:
    """Call step() (it returns the characters it made per stream) for about `seconds`, at
    least twice; return chars/s."""
    calls, steps, start = 0, 0, time.perf_counter()
    while True:
        steps += step()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 2:
            return streams * steps / elapsed


@dataclass(frozen=True)
class Paired:
    """Engine and numpy chars/s over interleaved rounds: medians, and the median ratio."""

    engine: float
    numpy: float
    ratio: float


def paired(model: LSTMModel, streams: int, seconds: float) -> Paired:
    """Time the engine and the numpy loop in alternating rounds of `seconds` each."""
    batch, loop = engine_batch(model, streams), NumpyLoop(model, streams)
    pacer = Pacer()  # the engine runs calls of the length a worker makes

    def engine_step() -> int:
        pacer.step(batch)
        return batch.last_steps

    def numpy_step() -> int:
        loop.step()
        return 1

    engine_step()  # warm up (compiled kernels, buffers, BLAS threads)
    numpy_step()
    engine, baseline = [], []
    for round_ in range(ROUNDS):
        # Alternate which goes first, so neither always runs in the other's wake.
        if round_ % 2:
            baseline.append(rate(numpy_step, streams, seconds))
            engine.append(rate(engine_step, streams, seconds))
        else:
            engine.append(rate(engine_step, streams, seconds))
            baseline.append(rate(numpy_step, streams, seconds))
    ratios = [e / b for e, b in zip(engine, baseline, strict=True)]
    return Paired(statistics.median(engine), statistics.median(baseline), statistics.median(ratios))


def keras_window_model(model: LSTMModel) -> Any:
    """Rebuild the tfjs window model as a Keras model with the same weights and activation."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import keras

    layer = model.layers[0]

    def tfjs_hard_sigmoid(x: Any) -> Any:
        # TensorFlow.js (and Keras 2) define hard_sigmoid as clip(0.2 x + 0.5, 0, 1).
        return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)

    assert model.window is not None
    keras_model = keras.Sequential(
        [
            keras.Input((model.window, model.vocab_size)),
            keras.layers.LSTM(layer.units, recurrent_activation=tfjs_hard_sigmoid),
            keras.layers.Dense(model.vocab_size, activation="softmax"),
        ]
    )
    inputs = layer.input_size
    keras_model.layers[0].set_weights([layer.kernel[:inputs], layer.kernel[inputs:], layer.bias])
    keras_model.layers[1].set_weights([model.output_kernel, model.output_bias])
    return keras_model


def keras_loop(model: LSTMModel, chars: int) -> tuple[float, str]:
    """Generate greedily like the Keras example (predict per char); return chars/s and text.

    The example samples with a temperature; greedy picks let the text be checked against
    the engine's, and the draw itself is a negligible part of each character's time.
    """
    keras_model = keras_window_model(model)
    assert model.window is not None
    window = list(model.encode("opefully it works and we'll get results."))[-model.window :]
    eye = np.eye(model.vocab_size, dtype=np.float32)
    keras_model.predict(eye[window][None], verbose=0)  # build the predict function first
    out: list[int] = []
    durations = []
    for _ in range(chars):
        start = time.perf_counter()
        probs = keras_model.predict(eye[window][None], verbose=0)[0].astype(np.float64)
        preds = np.log(probs + 1e-12)  # the example's sample(): log(p) / T, multinomial
        next_id = int(np.argmax(preds))
        out.append(next_id)
        window = [*window[1:], next_id]
        durations.append(time.perf_counter() - start)
    # The median character, so a burst of other work on the machine does not flatter us.
    return 1.0 / float(np.median(durations)), model.decode(out)


def engine_greedy(model: LSTMModel, chars: int) -> str:
    """Generate greedily with the engine from the same window as keras_loop."""
    batch = Batch(model, capacity=1)
    seed = model.encode("opefully it works and we'll get results.")
    batch.add(0, seed, SamplingParams(length=chars, temperature=0), random_seed=0)
    while True:
        finished = batch.step()
        if finished:
            return finished[0].text


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier figures)")
    parser.add_argument("--models", nargs="+", default=MODELS, help="models to measure")
    parser.add_argument("--streams", nargs="+", type=int, default=STREAMS, help="batch sizes")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras example loop")
    args = parser.parse_args()
    seconds = 0.1 if args.quick else 0.3
    folder = shared_models()
    steal = Steal()
    print(
        f"numba threads: {kernels.thread_count()}, cpu count: {os.cpu_count()}, "
        f"load average: {os.getloadavg()[0]:.1f} (other work on the machine lowers figures)"
    )
    threads = kernels.thread_count()
    gemm = gemm_rate(threads, 1.0 if args.quick else 3.0)
    models = {name: load_model(folder / name) for name in args.models}
    results = {
        name: {s: paired(model, s, seconds) for s in args.streams} for name, model in models.items()
    }
    gemm = max(gemm, gemm_rate(threads, 1.0 if args.quick else 3.0))  # before and after
    print(
        f"float32 GEMM rate, numpy matmul {GEMM_SIZE}^3 on {threads} threads, best in this run: "
        f"{gemm / 1e9:.1f} GFLOP/s"
    )
    print(f"engine vs numpy (bench/baseline.py): {ROUNDS} interleaved rounds of {seconds} s each")
    print()
    print(
        f"{'model':<18} {'FLOP/char':>10} {'bound c/s':>10} {'streams':>8} "
        f"{'engine c/s':>11} {'numpy c/s':>10} {'ratio':>6} {'of bound':>9}"
    )
    for name, model in models.items():
        flops = flops_per_char(model)
        bound = gemm / flops
        for streams, row in results[name].items():
            print(
                f"{name:<18} {flops / 1e6:>9.2f}M {bound:>10.0f} {streams:>8} "
                f"{row.engine:>11.0f} {row.numpy:>10.0f} {row.ratio:>6.2f} "
                f"{row.engine / bound:>9.0%}"
            )
    print()
    for name, model in models.items():
        if model.mode is Mode.WINDOW or 1 not in results[name]:
            continue
        nbytes = weight_bytes(model)
        rate_ = read_rate(nbytes, 0.3 if args.quick else 1.0)
        ceiling = rate_ / nbytes
        single = results[name][1]
        print(
            f"{name}, one stream: {nbytes / 1e6:.2f} MB of weights read per character; one core "
            f"reads them in {nbytes / rate_ * 1e6:.0f} us ({rate_ / 1e9:.0f} GB/s), so one core "
            f"makes at most {ceiling:,.0f} c/s = {ceiling / single.numpy:.1f}x the numpy loop "
            f"(engine {single.engine / ceiling:.0%} of that)"
        )
    if "jessvb_nietzsche" in models and not args.no_keras:
        print()
        window = models["jessvb_nietzsche"]
        keras_chars = 8 if args.quick else 30
        keras_rate, keras_text = keras_loop(window, keras_chars)
        same = engine_greedy(window, keras_chars) == keras_text
        print(f"Keras example loop on jessvb_nietzsche (predict per char): {keras_rate:.1f} c/s")
        print(f"  greedy text identical to the engine's: {same}")
        one = results["jessvb_nietzsche"][min(results["jessvb_nietzsche"])].engine
        print(f"window model vs Keras loop: fewest streams {one / keras_rate:.0f}x  (floor 50x)")
    stolen = steal.share()
    if stolen is not None:
        print(f"CPU time stolen by the hypervisor during the run: {stolen:.1%}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
