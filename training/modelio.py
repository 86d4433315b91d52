"""The project's model folder: model.keras, vocab.json (index -> char) and training.json."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from training.errors import TrainingError

MODEL_FILE = "model.keras"
VOCAB_FILE = "vocab.json"
TRAINING_FILE = "training.json"
STAGING = ".saving"  # written first, then moved into place, so a crash leaves the old model


def is_project_model(path: Path) -> bool:
    """Say whether a path is a model folder in the project's own format."""
    return (path / MODEL_FILE).is_file() and (path / VOCAB_FILE).is_file()


def check_writable(folder: Path) -> None:
    """Create the output folder if needed and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise TrainingError(folder, f"cannot write the model here: {reason}") from None


def write_json(path: Path, value: Any) -> None:
    """Write JSON as UTF-8 with real (unescaped) characters, indented for people."""
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def save_project_model(
    folder: Path, network: Any, vocab: tuple[str, ...], training: dict[str, Any]
) -> None:
    """Save a network's weights with its vocabulary and training record into a model folder."""
    staging = folder / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _without_optimizer(network).save(staging / MODEL_FILE)
    write_json(staging / VOCAB_FILE, list(vocab))
    write_json(staging / TRAINING_FILE, training)
    for name in (VOCAB_FILE, MODEL_FILE, TRAINING_FILE):
        os.replace(staging / name, folder / name)
    staging.rmdir()


def _without_optimizer(network: Any) -> Any:
    """Copy a network without its optimizer: Adam's moments would triple the file's size."""
    copy = network.__class__.from_config(network.get_config())
    copy.set_weights(network.get_weights())
    return copy


def read_training(folder: Path) -> dict[str, Any]:
    """Return a model folder's training record, or {} when it has none."""
    path = folder / TRAINING_FILE
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TrainingError(path, f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise TrainingError(path, "expected a JSON object")
    return value
