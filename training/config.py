"""The settings of one training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from training.corpus import DEFAULT_MAX_VOCAB

TrainMode = Literal["stateful", "window"]
MODES: tuple[TrainMode, ...] = ("stateful", "window")


@dataclass(frozen=True)
class TrainConfig:
    """What to build and how to train it."""

    layers: tuple[int, ...] = (128, 128)  # LSTM units per layer, bottom first
    embedding_dim: int | None = 64  # learned vector size per character; None: one-hot input
    mode: TrainMode = "stateful"  # stateful: loss at every position; window: Keras example
    seq_len: int = 100  # characters per training sequence; the window length in window mode
    step: int = 3  # window mode: characters between the starts of two windows
    epochs: int = 10  # passes over the training text
    batch_size: int = 64  # sequences per gradient step
    learning_rate: float = 0.002  # Adam step size
    validation_split: float = 0.1  # fraction of the text, taken from its end, held out
    max_chars: int | None = None  # use only the first N characters of the corpus
    max_vocab: int = DEFAULT_MAX_VOCAB  # refuse corpora with more distinct characters
    random_seed: int = 0  # makes initialisation and shuffling repeatable

    def __post_init__(self) -> None:
        checks = [
            (bool(self.layers) and all(u >= 1 for u in self.layers), "layers must be >= 1 each"),
            (self.embedding_dim is None or self.embedding_dim >= 1, "embedding_dim must be >= 1"),
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)}"),
            (self.seq_len >= 1, "seq_len must be >= 1"),
            (self.step >= 1, "step must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0 <= self.validation_split < 1, "validation_split must be in [0, 1)"),
            (self.max_chars is None or self.max_chars >= 1, "max_chars must be >= 1"),
            (self.max_vocab >= 2, "max_vocab must be >= 2"),
            (self.random_seed >= 0, "random_seed must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def as_json(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values."""
        values = asdict(self)
        values["layers"] = list(self.layers)
        return values
