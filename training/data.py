"""Cut an encoded text into training examples: inputs and the characters that follow them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Ids = npt.NDArray[np.int32]


class TooShortError(ValueError):
    """The text holds fewer examples than training needs."""


@dataclass(frozen=True)
class Examples:
    """Inputs and targets: x [n, L] ids; y [n, L] (stateful) or [n] (window) ids."""

    x: Ids
    y: Ids

    def __len__(self) -> int:
        return int(self.x.shape[0])


def encode(text: str, vocab: tuple[str, ...]) -> Ids:
    """Turn text into ids of a vocabulary that holds every character of it."""
    index = {char: i for i, char in enumerate(vocab)}
    return np.fromiter((index[c] for c in text), dtype=np.int32, count=len(text))


def sequences(ids: Ids, length: int) -> Examples:
    """Cut ids into back-to-back sequences, each target the input shifted by one character."""
    count = (len(ids) - 1) // length
    used = count * length
    return Examples(
        ids[:used].reshape(count, length).copy(), ids[1 : used + 1].reshape(count, length).copy()
    )


def windows(ids: Ids, length: int, step: int) -> Examples:
    """Take a window of `length` ids every `step` ids, each targeting the id after it."""
    starts = np.arange(0, len(ids) - length, step)
    view = np.lib.stride_tricks.sliding_window_view(ids, length)
    return Examples(view[starts].copy(), ids[starts + length].copy())


def make_examples(ids: Ids, mode: str, length: int, step: int) -> Examples:
    """Cut ids into examples for a stateful (all positions) or window (last position) model."""
    return sequences(ids, length) if mode == "stateful" else windows(ids, length, step)


def split_text(ids: Ids, fraction: float, length: int) -> tuple[Ids, Ids | None]:
    """Hold out the end of the text for validation, so no validation text is trained on."""
    if fraction == 0:
        return ids, None
    cut = len(ids) - max(int(len(ids) * fraction), length + 1)
    return ids[:cut], ids[cut:]


def training_sets(
    ids: Ids, mode: str, length: int, step: int, fraction: float
) -> tuple[Examples, Examples | None]:
    """Build training and validation examples, refusing a text too short for either."""
    needed = length + 1
    if len(ids) < needed:
        raise TooShortError(
            f"has {len(ids)} characters, fewer than one sequence of {length} plus the "
            f"character after it ({needed}); lower --seq-len or use a longer text"
        )
    train_ids, val_ids = split_text(ids, fraction, length)
    train = make_examples(train_ids, mode, length, step)
    val = None if val_ids is None else make_examples(val_ids, mode, length, step)
    if len(train) == 0 or (val is not None and len(val) == 0):
        raise TooShortError(
            f"has {len(ids)} characters: too few for one training and one validation "
            f"sequence of {length}; lower --seq-len or --validation-split, or use a longer text"
        )
    return train, val
