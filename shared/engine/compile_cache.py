"""Where numba keeps the engine's compiled kernels, and compiling them ahead of use.

`python -m shared.engine.compile_cache` compiles every kernel variant the engine runs (one to
four layers, one-hot or embedded input, one thread or many) into the cache, so a worker that
starts later loads machine code instead of compiling it (seconds instead of tens of seconds).
`make install` and `make run` do it once per install.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numba

ENGINE = Path(__file__).resolve().parent
CACHE_ROOT = Path(sys.prefix) / "var" / "lstmgen-numba"  # beside the installed numba
MAX_WARM_LAYERS = 4


def source_digest() -> str:
    """Return a digest of the engine's sources and numba's version.

    numba invalidates a cached function only when the file defining it changes; a kernel
    inlined from another file (exp32 into the sampler) would keep its old code. A cache folder
    per digest means any change to any engine file compiles afresh.
    """
    digest = hashlib.sha256(numba.__version__.encode())
    for path in sorted(ENGINE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    """Return the cache folder of the current engine sources."""
    return CACHE_ROOT / source_digest()


def configure() -> None:
    """Point numba's cache at cache_dir() unless NUMBA_CACHE_DIR chose one (before compiling)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only install: numba falls back to its own locations
    if os.access(folder, os.W_OK):
        numba.config.CACHE_DIR = str(folder)  # type: ignore[attr-defined]


def warm() -> float:
    """Compile every kernel variant into the cache; return the seconds it took."""
    import numpy as np

    from shared.engine.batch import Batch, predict
    from shared.engine.model import LSTMLayer, LSTMModel
    from shared.engine.sampling import SamplingParams

    started = time.monotonic()
    rng = np.random.default_rng(0)

    def weights(*shape: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        return rng.normal(size=shape).astype(np.float32)

    vocab = tuple("abcdefgh")
    for depth in range(1, MAX_WARM_LAYERS + 1):
        for embedded in (False, True):
            width = 4 if embedded else len(vocab)
            layers = []
            for _ in range(depth):
                layers.append(LSTMLayer(weights(width + 16, 64), weights(64)))
                width = 16
            model = LSTMModel(
                name="warm",
                format="ml5",
                source=ENGINE,
                vocab=vocab,
                embedding=weights(len(vocab), 4) if embedded else None,
                layers=tuple(layers),
                recurrent_activation="sigmoid",
                output_kernel=weights(16, len(vocab)),
                output_bias=weights(len(vocab)),
            )
            predict(model, "ab", temperature=0.5, unknown="error")
            for rows in (1, 16):
                batch = Batch(model, capacity=rows)
                for row in range(rows):
                    batch.add(row, [0, 1], SamplingParams(length=2), row)
                batch.step()
    return time.monotonic() - started


if __name__ == "__main__":
    seconds = warm()
    print(f"engine kernels compiled into {numba.config.CACHE_DIR} in {seconds:.1f} s")  # type: ignore[attr-defined]
