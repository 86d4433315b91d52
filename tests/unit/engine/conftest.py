"""Fixtures for the engine tests: the reference models and oracle in ../shared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.engine.loaders import load_model
from shared.engine.model import LSTMModel
from tests.conftest import SHARED


@pytest.fixture(scope="session")
def models_dir(shared_dir: Path) -> Path:
    """Return the folder of reference models."""
    return shared_dir / "models"


_CACHE: dict[str, LSTMModel] = {}


@pytest.fixture(scope="session")
def reference_model(models_dir: Path) -> Any:
    """Return a loader of reference models by folder name (loaded once per session)."""

    def load(name: str) -> LSTMModel:
        if name not in _CACHE:
            _CACHE[name] = load_model(models_dir / name)
        return _CACHE[name]

    return load


@pytest.fixture(scope="session")
def oracle(shared_dir: Path) -> Any:
    """Return a reader of the recorded outputs of the original code by model name."""

    def read(name: str) -> dict[str, Any]:
        return json.loads((shared_dir / "oracle" / f"{name}.json").read_text(encoding="utf-8"))

    return read


def reference_names() -> list[str]:
    """List the reference model folders (empty when ../shared is absent)."""
    folder = SHARED / "models"
    if not folder.is_dir():
        return ["shared-dir-missing"]  # the test then skips, or fails in CI, via shared_dir
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def oracle_names() -> list[str]:
    """List the models that have recorded oracle outputs."""
    folder = SHARED / "oracle"
    if not folder.is_dir():
        return ["shared-dir-missing"]
    return sorted(p.stem for p in folder.glob("*.json"))
