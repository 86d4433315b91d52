"""The one error type training and export raise for bad input."""

from __future__ import annotations

from pathlib import Path


class TrainingError(ValueError):
    """Bad input to training or export; the message names the file and what is wrong."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = Path(path)
        self.message = message
        super().__init__(f"{path}: {message}")
