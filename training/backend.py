"""Import Keras once, quietly: TensorFlow's C++ start-up notes mean nothing to our users."""

from __future__ import annotations

import os

# Must be set before TensorFlow loads; users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.errors import TrainingError

try:
    import keras
except ModuleNotFoundError as missing:  # `make run` installs only what serving needs
    raise TrainingError(
        "tensorflow", "not installed: run `make install-train` (requirements-train.txt)"
    ) from missing

__all__ = ["keras"]
