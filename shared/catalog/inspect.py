"""Checking an uploaded model by loading it with the engine's own loaders (workers, tools).

The API never runs this: it needs the loaders (numpy, h5py) and holds the weights, so the API
hands the check to a worker (`lstmgen.check_model`) and waits for the verdict.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO

from shared.catalog.archive import ArchiveError, ArchiveLimits, archive_members, unpack
from shared.catalog.records import ModelInfo
from shared.engine.loaders import load_model
from shared.engine.model import LSTMModel, ModelLoadError


def inspect_archive(file: IO[bytes], limits: ArchiveLimits, max_vocab: int) -> ModelInfo:
    """Unpack a model archive into a temporary folder and load it; ArchiveError if it fails."""
    with tempfile.TemporaryDirectory(prefix="lstmgen-check-") as tmp:
        folder = Path(tmp)
        unpack(file, folder, limits)
        model = load_checked(folder, limits)
        if model.vocab_size > max_vocab:
            raise ArchiveError(
                f"the vocabulary has {model.vocab_size} characters, more than {max_vocab}"
            )
        return ModelInfo.from_properties(model.properties())


def load_checked(folder: Path, limits: ArchiveLimits) -> LSTMModel:
    """Load the model of an unpacked folder, its inner `.keras` archives checked first."""
    for inner in sorted(folder.rglob("*.keras")):
        with inner.open("rb") as handle:
            try:
                archive_members(handle, limits)
            except ArchiveError as error:
                raise ArchiveError(f"{inner.relative_to(folder)}: {error}") from None
    try:
        return load_model(folder, name=folder.name)
    except ModelLoadError as error:
        raise ArchiveError(_relative(error, folder)) from None
    except Exception as error:  # a reader's own failure on hostile bytes: still the file's fault
        raise ArchiveError(
            f"the model could not be read: {type(error).__name__}: {error}"
        ) from None


def _relative(error: ModelLoadError, folder: Path) -> str:
    """Return a load error's message with the file named inside the archive."""
    try:
        where = error.path.resolve().relative_to(folder.resolve())
    except ValueError:
        return error.message
    return error.message if str(where) == "." else f"{where}: {error.message}"
