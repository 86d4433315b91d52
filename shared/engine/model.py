"""The in-memory character LSTM model shared by every format, and its vocabulary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
UnknownChars = Literal["error", "drop", "lowercase"]
RecurrentActivation = Literal["sigmoid", "hard_sigmoid", "hard_sigmoid_k3"]
RECURRENT_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "hard_sigmoid", "hard_sigmoid_k3")

# An input id that feeds a zero input vector; ml5 fed one for characters outside its
# vocabulary, so conformance with its recorded outputs needs it. encode() never returns it.
ZERO_INPUT = -1


class Mode(StrEnum):
    """How a model turns a text into the next-character distribution."""

    STATEFUL = "stateful"  # one step per character, state carried along
    WINDOW = "window"  # every character re-runs the last `window` characters from zero state


class ModelLoadError(Exception):
    """A model file is missing or malformed; the message names the file and the problem."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = Path(path)
        self.message = message
        super().__init__(f"{path}: {message}")


class UnknownCharactersError(ValueError):
    """The seed holds characters the model's vocabulary does not have."""

    def __init__(self, chars: list[str]) -> None:
        self.chars = chars
        shown = ", ".join(repr(c) for c in chars)
        super().__init__(f"characters not in the model's vocabulary: {shown}")


class EmptySeedError(ValueError):
    """A seed none of whose characters the model knows (after the unknown-character policy)."""


@dataclass(frozen=True)
class Defaults:
    """Generation defaults a model advertises (ml5's defaults unless the model says otherwise)."""

    seed: str = "a"
    length: int = 20
    temperature: float = 0.5


def _float32(name: str, value: Any, ndim: int) -> Array:
    array = np.ascontiguousarray(value, dtype=np.float32)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class LSTMLayer:
    """One LSTM layer: fused kernel [in + H, 4H] and bias [4H], gates in Keras order i, f, c, o."""

    kernel: Array
    bias: Array

    def __post_init__(self) -> None:
        kernel = _float32("kernel", self.kernel, 2)
        bias = _float32("bias", self.bias, 1)
        hidden4 = kernel.shape[1]
        if hidden4 % 4 or kernel.shape[0] <= hidden4 // 4 or bias.shape != (hidden4,):
            raise ValueError(f"LSTM shapes do not fit: kernel {kernel.shape}, bias {bias.shape}")
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "bias", bias)

    @property
    def units(self) -> int:
        """Return the hidden size H."""
        return int(self.kernel.shape[1]) // 4

    @property
    def input_size(self) -> int:
        """Return the size of the input vector."""
        return int(self.kernel.shape[0]) - self.units


@dataclass(frozen=True, eq=False)
class LSTMModel:
    """A character LSTM: input (one-hot or embedding), stacked LSTM layers, softmax output."""

    name: str
    format: str
    source: Path
    vocab: tuple[str, ...]
    embedding: Array | None
    layers: tuple[LSTMLayer, ...]
    recurrent_activation: str
    output_kernel: Array
    output_bias: Array
    mode: Mode = Mode.STATEFUL
    window: int | None = None
    defaults: Defaults = field(default_factory=Defaults)
    warnings: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_kernel", _float32("output_kernel", self.output_kernel, 2))
        object.__setattr__(self, "output_bias", _float32("output_bias", self.output_bias, 1))
        if self.embedding is not None:
            object.__setattr__(self, "embedding", _float32("embedding", self.embedding, 2))
        object.__setattr__(self, "mode", Mode(self.mode))
        self._check_shapes()

    def _check_shapes(self) -> None:
        vocab_size = len(self.vocab)
        if not self.layers:
            raise ValueError("a model needs at least one LSTM layer")
        if self.recurrent_activation not in RECURRENT_ACTIVATIONS:
            raise ValueError(f"unknown recurrent activation {self.recurrent_activation!r}")
        expected_in = vocab_size if self.embedding is None else self.embedding.shape[1]
        if self.embedding is not None and self.embedding.shape[0] != vocab_size:
            raise ValueError(f"embedding has {self.embedding.shape[0]} rows for {vocab_size} chars")
        for index, layer in enumerate(self.layers):
            if layer.input_size != expected_in:
                raise ValueError(
                    f"layer {index} takes {layer.input_size} inputs, expected {expected_in}"
                )
            expected_in = layer.units
        if self.output_kernel.shape != (expected_in, vocab_size):
            raise ValueError(
                f"output kernel is {self.output_kernel.shape}, expected {(expected_in, vocab_size)}"
            )
        if self.output_bias.shape != (vocab_size,):
            raise ValueError(f"output bias is {self.output_bias.shape}, expected ({vocab_size},)")
        if self.mode is Mode.WINDOW and (self.window is None or self.window < 1):
            raise ValueError("a window model needs a window length >= 1")

    @property
    def vocab_size(self) -> int:
        """Return the number of characters the model knows."""
        return len(self.vocab)

    @property
    def input_size(self) -> int:
        """Return the size of the first layer's input vector."""
        return self.layers[0].input_size

    @cached_property
    def char_to_id(self) -> Mapping[str, int]:
        """Map each single character of the vocabulary to its id (the first id if repeated)."""
        return char_ids(self.vocab)

    def encode(self, text: str, unknown: UnknownChars = "error") -> list[int]:
        """Turn text into vocabulary ids, handling characters outside the vocabulary."""
        return encode_text(self.char_to_id, text, unknown)

    def encode_seed(self, seed: str, unknown: UnknownChars = "error") -> list[int]:
        """Return the ids of a seed (the default seed if empty); EmptySeedError if it has none."""
        return encode_seed(self.char_to_id, seed or self.defaults.seed, unknown)

    @cached_property
    def reversible(self) -> bool:
        """Return whether every text of the model's characters has exactly one id sequence
        (each vocabulary entry is one character, none repeated)."""
        return is_reversible(self.vocab)

    def encode_generated(self, text: str) -> list[int] | None:
        """Return the ids that generated `text`, or None if the vocabulary cannot tell them."""
        if not self.reversible:
            return None
        known = self.char_to_id
        try:
            return [known[c] for c in text]
        except KeyError:
            return None

    def decode(self, ids: Iterable[int]) -> str:
        """Turn vocabulary ids back into text."""
        return "".join(self.vocab[i] for i in ids)

    def properties(self) -> dict[str, Any]:
        """Describe the model the way ml5 does, plus format, mode and warnings."""
        return {
            "name": self.name,
            "format": self.format,
            "vocab": list(self.vocab),
            "vocab_size": self.vocab_size,
            "cells_amount": len(self.layers),
            "layer_sizes": [layer.units for layer in self.layers],
            "embedding_size": None if self.embedding is None else int(self.embedding.shape[1]),
            "recurrent_activation": self.recurrent_activation,
            "window": self.window,
            "mode": str(self.mode),
            "defaults": {
                "seed": self.defaults.seed,
                "length": self.defaults.length,
                "temperature": self.defaults.temperature,
            },
            "warnings": list(self.warnings),
            "source": str(self.source),
        }


def char_ids(vocab: Iterable[str]) -> dict[str, int]:
    """Map each single character of a vocabulary to its id (the first id if repeated)."""
    mapping: dict[str, int] = {}
    for index, char in enumerate(vocab):
        if len(char) == 1:
            mapping.setdefault(char, index)
    return mapping


def encode_text(known: Mapping[str, int], text: str, unknown: UnknownChars = "error") -> list[int]:
    """Turn text into the ids of `known`, handling characters outside it as `unknown` says."""
    if unknown not in ("error", "drop", "lowercase"):
        raise ValueError(f"unknown must be 'error', 'drop' or 'lowercase', not {unknown!r}")
    if unknown == "lowercase":
        pairs = [(c, c if c in known else c.lower()) for c in text]
    else:
        pairs = [(c, c) for c in text]
    missing = [c for c in dict.fromkeys(orig for orig, c in pairs if c not in known)]
    if missing and unknown != "drop":
        raise UnknownCharactersError(missing)
    return [known[c] for _, c in pairs if c in known]


def encode_seed(known: Mapping[str, int], seed: str, unknown: UnknownChars = "error") -> list[int]:
    """Return the ids of a seed; EmptySeedError if it has no character of `known`."""
    ids = encode_text(known, seed, unknown)
    if not ids:
        raise EmptySeedError("the seed has no character the model knows")
    return ids


def is_reversible(vocab: tuple[str, ...]) -> bool:
    """Return whether every entry of a vocabulary is one character, none repeated."""
    return all(len(c) == 1 for c in vocab) and len(set(vocab)) == len(vocab)


def default_seed(vocab: Iterable[str]) -> str:
    """Pick ml5's default seed "a", or the first usable character when the model lacks it."""
    chars = [c for c in vocab if len(c) == 1]
    if "a" in chars:
        return "a"
    return next((c for c in chars if c.isalpha()), chars[0] if chars else "")


def vocab_warnings(vocab: Iterable[str]) -> list[str]:
    """List vocabulary entries that cannot be a single character, and repeated ones."""
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for index, char in enumerate(vocab):
        if len(char) != 1:
            warnings.append(f"vocabulary id {index} is {char!r}, not one character")
        elif char in seen:
            warnings.append(f"vocabulary ids {seen[char]} and {index} are both {char!r}")
        else:
            seen[char] = index
    return warnings
