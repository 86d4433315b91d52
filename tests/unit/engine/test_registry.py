"""The model directory: names, resolving names and paths, loading once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from shared.engine.registry import ModelRegistry, UnknownModelError
from tests.unit.engine.factories import VOCAB, random_weights, write_ml5


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    weights = random_weights(np.random.default_rng(4), len(VOCAB), [4], 3)
    write_ml5(tmp_path / "alpha", weights, VOCAB)
    write_ml5(tmp_path / "beta", weights, VOCAB)
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "gamma.keras").write_bytes(b"")
    return tmp_path


def test_names_lists_folders_and_keras_files(model_dir: Path) -> None:
    assert ModelRegistry(model_dir).names() == ["alpha", "beta", "gamma"]
    assert ModelRegistry(model_dir / "missing").names() == []


def test_get_loads_once_and_reloads_changed_files(model_dir: Path) -> None:
    registry = ModelRegistry(model_dir)
    model = registry.get("alpha")
    assert model.name == "alpha" and registry.get("alpha") is model
    vocab = model_dir / "alpha" / "vocab.json"
    os.utime(vocab, (vocab.stat().st_atime, vocab.stat().st_mtime + 10))
    assert registry.get("alpha") is not model


def test_resolve_names_and_paths(model_dir: Path) -> None:
    registry = ModelRegistry(model_dir)
    assert registry.resolve("beta") == ("beta", model_dir / "beta")
    name, path = registry.resolve(str(model_dir / "alpha"))
    assert (name, path) == ("alpha", (model_dir / "alpha").resolve())
    assert registry.resolve("gamma") == ("gamma", model_dir / "gamma.keras")
    assert registry.load(str(model_dir / "beta")).name == "beta"
    with pytest.raises(UnknownModelError):
        registry.get(str(model_dir / "beta"))  # requests name models, never paths


@pytest.mark.parametrize("name", ["nope", "../alpha", "alpha/../beta", ""])
def test_unknown_names_list_the_available_ones(model_dir: Path, name: str) -> None:
    with pytest.raises(UnknownModelError) as caught:
        ModelRegistry(model_dir).path(name)
    assert caught.value.available == ["alpha", "beta", "gamma"]
    assert "available: alpha, beta, gamma" in str(caught.value)
