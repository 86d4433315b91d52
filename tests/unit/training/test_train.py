"""Real (tiny) training runs: the loss falls, the engine agrees with Keras, resume continues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.client.cli import main
from shared.engine.batch import next_probabilities
from shared.engine.loaders import load_model
from shared.engine.model import Mode, ModelLoadError
from tests.unit.training.corpora import code_like_text, write_corpus
from training.corpus import CorpusError
from training.errors import TrainingError

pytestmark = [
    pytest.mark.tensorflow,
    # Keras saving trips a NumPy 2 deprecation inside TensorFlow; it is theirs, not ours.
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

TINY = {
    "layers": (24,),
    "embedding_dim": 8,
    "seq_len": 25,
    "batch_size": 16,
    "epochs": 4,
    "learning_rate": 0.01,
    "validation_split": 0.1,
    "random_seed": 3,
}
SEEDS = ("def beta(x):\n    ret", "d", "\n\ndef gamma(x):\n    return x + 7\n\ndef alpha(x):\n")


@pytest.fixture(scope="module")
def keras() -> Any:
    from training.backend import keras

    return keras


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"), code_like_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    from training.train import train

    out = tmp_path_factory.mktemp("models") / "tiny"
    train(corpus, out, TINY, progress=False)
    return out


def record(folder: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    return value


def keras_next(keras: Any, folder: Path, ids: list[int]) -> np.ndarray:
    network = keras.saving.load_model(folder / "model.keras")
    probs = network.predict(np.array([ids]), verbose=0)[0]
    return np.asarray(probs[-1] if probs.ndim == 2 else probs)


def test_training_lowers_the_loss(trained: Path, corpus: Path) -> None:
    info = record(trained)
    history = info["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss_bpc"] < history[0]["loss_bpc"] - 0.5
    assert history[-1]["val_loss_bpc"] < history[0]["val_loss_bpc"]
    assert info["final"] == {k: history[-1][k] for k in ("loss_bpc", "val_loss_bpc")}
    assert info["corpus"]["size_bytes"] == corpus.stat().st_size
    assert len(info["corpus"]["sha256"]) == 64
    assert info["charset"] == "".join(sorted(set(corpus.read_text(encoding="utf-8"))))
    assert info["parameters"]["layers"] == [24] and info["mode"] == "stateful"
    vocab = json.loads((trained / "vocab.json").read_text(encoding="utf-8"))
    assert vocab == list(info["charset"])


def test_engine_matches_keras_predict(keras: Any, trained: Path) -> None:
    model = load_model(trained)
    assert model.format == "keras" and model.mode is Mode.STATEFUL
    assert model.recurrent_activation == "sigmoid" and model.embedding is not None
    for seed in SEEDS:
        ids = model.encode(seed)
        expected = keras_next(keras, trained, ids)
        np.testing.assert_allclose(next_probabilities(model, ids), expected, atol=1e-5)


def test_window_mode_trains_a_window_model(keras: Any, corpus: Path, tmp_path: Path) -> None:
    from training.train import train

    out = tmp_path / "window"
    settings = {**TINY, "mode": "window", "seq_len": 12, "step": 5, "epochs": 1}
    result = train(corpus, out, settings, progress=False)
    assert result.epochs_total == 1
    model = load_model(out)
    assert model.mode is Mode.WINDOW and model.window == 12
    ids = model.encode("def alpha(x):\n")
    expected = keras_next(keras, out, ids[-12:])
    np.testing.assert_allclose(next_probabilities(model, ids), expected, atol=1e-5)


def test_resume_starts_from_the_saved_weights(trained: Path, corpus: Path, tmp_path: Path) -> None:
    from training.train import train

    out = tmp_path / "resumed"
    # A vanishing learning rate leaves the weights as saved: the predictions must not move.
    train(corpus, out, {"epochs": 1, "learning_rate": 1e-12}, resume=trained, progress=False)
    before, after = load_model(trained), load_model(out)
    ids = before.encode(SEEDS[0])
    np.testing.assert_allclose(
        next_probabilities(after, ids), next_probabilities(before, ids), atol=1e-6
    )
    info = record(out)
    assert info["epochs_trained"] == 5 and len(info["history"]) == 5
    assert info["resumed_from"]["epochs_trained"] == 4
    assert info["parameters"]["seq_len"] == TINY["seq_len"]  # kept from the first run


def test_resume_keeps_improving(trained: Path, corpus: Path, tmp_path: Path) -> None:
    from training.train import train

    out = tmp_path / "more"
    result = train(corpus, out, {"epochs": 1}, resume=trained, progress=False)
    first_run = record(trained)["history"]
    assert result.loss_bpc < first_run[0]["loss_bpc"]
    assert result.val_loss_bpc is not None
    assert result.val_loss_bpc < first_run[-1]["val_loss_bpc"] + 0.2


def test_resume_from_another_format(trained: Path, corpus: Path, tmp_path: Path) -> None:
    from training.export import export_model
    from training.train import train

    source = trained
    tfjs = tmp_path / "tfjs"
    export_model(source, "tfjs", tfjs)
    out = tmp_path / "from-tfjs"
    train(corpus, out, {"epochs": 1, "learning_rate": 1e-12}, resume=tfjs, progress=False)
    ids = load_model(source).encode(SEEDS[0])
    np.testing.assert_allclose(
        next_probabilities(load_model(out), ids),
        next_probabilities(load_model(source), ids),
        atol=1e-6,
    )
    assert record(out)["resumed_from"]["path"] == str(tfjs)


def test_resume_refuses_unknown_characters(trained: Path, tmp_path: Path) -> None:
    from training.train import train

    corpus = write_corpus(tmp_path, code_like_text() + "print('\u00e9t\u00e9')\n")
    with pytest.raises(CorpusError, match="does not know: \"'\", 'i', '\u00e9' \\(a resumed"):
        train(corpus, tmp_path / "out", {"epochs": 1}, resume=trained, progress=False)


def test_resume_refuses_a_different_architecture(
    trained: Path, corpus: Path, tmp_path: Path
) -> None:
    from training.train import train

    with pytest.raises(TrainingError, match="layers 24, not 32,32: a resumed model keeps"):
        train(corpus, tmp_path / "o", {"layers": (32, 32)}, resume=trained, progress=False)
    with pytest.raises(TrainingError, match="mode stateful, not window"):
        train(corpus, tmp_path / "o", {"mode": "window"}, resume=trained, progress=False)


def test_resume_needs_a_model(corpus: Path, tmp_path: Path) -> None:
    from training.train import train

    with pytest.raises(ModelLoadError, match="no such file or folder"):
        train(corpus, tmp_path / "o", {}, resume=tmp_path / "absent", progress=False)


@pytest.mark.parametrize(
    ("content", "settings", "message"),
    [
        ("", {}, "is empty"),
        ("\x00\x01\x02binary", {}, "looks binary"),
        ("def f(x):\n", {"seq_len": 100}, "fewer than one sequence of 100"),
        ("ab" * 60, {"seq_len": 100, "validation_split": 0.5}, "one training and one valid"),
        ("".join(map(chr, range(0x400, 0x600))) + "!", {}, "more than the limit of 512"),
    ],
)
def test_bad_input_fails_before_training(
    tmp_path: Path, content: str, settings: dict[str, Any], message: str
) -> None:
    from training.train import train

    corpus = write_corpus(tmp_path, content)
    with pytest.raises(CorpusError, match=message):
        train(corpus, tmp_path / "out", settings, progress=False)
    assert not (tmp_path / "out" / "model.keras").exists()


def test_unwritable_output_folder(corpus: Path, tmp_path: Path) -> None:
    from training.train import train

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(TrainingError, match="cannot write the model here"):
        train(corpus, blocker / "model", TINY, progress=False)


def test_command_line_train_and_errors(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    argv = ["train", str(corpus), "--out", str(out), "--layers", "16", "--embedding-dim", "0"]
    argv += ["--seq-len", "30", "--epochs", "1", "--batch-size", "32", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"saved {out}: 1 epochs in all" in printed and "bits/char" in printed
    model = load_model(out)
    assert model.embedding is None and model.input_size == model.vocab_size  # one-hot input
    empty = write_corpus(tmp_path, "", "empty.txt")
    assert main(["train", str(empty), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert capsys.readouterr().err == f"lstmgen train: error: {empty}: is empty\n"
