"""Small training texts made on the spot: structured enough that a few epochs learn something."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def code_like_text(chars: int = 12_000, seed: int = 0) -> str:
    """Return Python-like lines with a fixed shape and varying names and numbers."""
    rng = np.random.default_rng(seed)
    names = ["alpha", "beta", "gamma", "delta"]
    lines: list[str] = []
    while sum(map(len, lines)) < chars:
        name = names[int(rng.integers(len(names)))]
        lines.append(f"def {name}(x):\n    return x + {int(rng.integers(10))}\n\n")
    return "".join(lines)[:chars]


def write_corpus(folder: Path, text: str, name: str = "corpus.txt") -> Path:
    """Write a text file and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path
