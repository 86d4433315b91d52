"""Keras conformance: tiny models trained with TensorFlow, saved as .keras and .h5, read by us."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.engine.batch import next_probabilities
from shared.engine.loaders import load_model
from shared.engine.model import Mode

pytestmark = pytest.mark.tensorflow

VOCAB = list("abcdefg .\n")
WINDOW = 8


@pytest.fixture(scope="module")
def keras() -> Iterator[Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = pytest.importorskip("keras")
        keras.utils.set_random_seed(5)
        yield keras


def _one_hot(ids: np.ndarray) -> np.ndarray:
    return np.eye(len(VOCAB), dtype=np.float32)[ids]


def _build(keras: Any, kind: str) -> Any:
    layers = keras.layers
    v = len(VOCAB)
    if kind == "stateful":
        stack = [keras.Input((None, v)), layers.LSTM(12, return_sequences=True)]
    elif kind == "stateful_stacked_embedding":
        stack = [
            keras.Input((None,)),
            layers.Embedding(v, 5),
            layers.LSTM(10, return_sequences=True, recurrent_activation="hard_sigmoid"),
            layers.LSTM(7, return_sequences=True, recurrent_activation="hard_sigmoid"),
        ]
    elif kind == "window":
        stack = [keras.Input((WINDOW, v)), layers.LSTM(12, recurrent_activation="hard_sigmoid")]
    else:  # window_stacked
        stack = [
            keras.Input((WINDOW, v)),
            layers.LSTM(9, return_sequences=True),
            layers.LSTM(6),
        ]
    if kind == "window_stacked":
        stack += [layers.Dense(v), layers.Activation("softmax")]
    else:
        stack.append(layers.Dense(v, activation="softmax"))
    return keras.Sequential(stack)


def _train(keras: Any, model: Any, kind: str) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(VOCAB), (32, WINDOW + 1))
    inputs = ids[:, :-1] if kind.endswith("embedding") else _one_hot(ids[:, :-1])
    targets = _one_hot(ids[:, 1:]) if kind.startswith("stateful") else _one_hot(ids[:, -1])
    model.compile(optimizer=keras.optimizers.RMSprop(0.05), loss="categorical_crossentropy")
    model.fit(inputs, targets, epochs=1, batch_size=16, verbose=0)


KINDS = ["stateful", "stateful_stacked_embedding", "window", "window_stacked"]


@pytest.fixture(scope="module", params=KINDS)
def trained(request: Any, keras: Any, tmp_path_factory: Any) -> tuple[str, Any, Path]:
    """Train one tiny model per kind and save it both as .keras and as legacy .h5."""
    kind = request.param
    folder = tmp_path_factory.mktemp(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _build(keras, kind)
        _train(keras, model, kind)
        model.save(folder / "model.keras")
        model.save(folder / "model.h5")
    (folder / "vocab.json").write_text(json.dumps(VOCAB), encoding="utf-8")
    return kind, model, folder


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_models_match_predict(trained: tuple[str, Any, Path], suffix: str) -> None:
    kind, keras_model, folder = trained
    model = load_model(folder / f"model{suffix}")
    assert model.format == "keras" and model.vocab == tuple(VOCAB)
    if kind.startswith("window"):
        assert (model.mode, model.window) == (Mode.WINDOW, WINDOW)
    else:
        assert model.mode is Mode.STATEFUL
    if kind == "stateful_stacked_embedding":
        assert model.recurrent_activation == "hard_sigmoid_k3"  # Keras 3's relu6(x + 3) / 6
    seq = np.random.default_rng(1).integers(0, len(VOCAB), 2 * WINDOW)
    for end in (WINDOW, WINDOW + 3, 2 * WINDOW):
        ids = seq[:end]
        feed = ids[-WINDOW:] if kind.startswith("window") else ids
        x = feed[None] if kind.endswith("embedding") else _one_hot(feed)[None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = keras_model.predict(x, verbose=0)
        expected = out[0, -1] if out.ndim == 3 else out[0]
        ours = next_probabilities(model, ids.tolist())
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_project_model_folder(keras: Any, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = _build(keras, "stateful")
        trained.save(tmp_path / "model.keras")
    (tmp_path / "vocab.json").write_text(json.dumps(VOCAB), encoding="utf-8")
    training = {"mode": "stateful", "defaults": {"seed": "ab", "temperature": 0.8}}
    (tmp_path / "training.json").write_text(json.dumps(training), encoding="utf-8")
    model = load_model(tmp_path)
    assert model.name == tmp_path.name and model.metadata["training"] == training
    assert (model.defaults.seed, model.defaults.length, model.defaults.temperature) == (
        "ab",
        20,
        0.8,
    )
