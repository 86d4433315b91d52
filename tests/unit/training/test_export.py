"""Export round trips: what the engine loads back predicts exactly as the original."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.client.cli import main
from shared.engine.batch import next_probabilities
from shared.engine.loaders import load_model
from shared.engine.model import LSTMModel
from tests.conftest import write_tiny_model
from training.errors import TrainingError
from training.export import export_model, write_tfjs

# Keras saving trips a NumPy 2 deprecation inside TensorFlow; it is theirs, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def probe_ids(model: LSTMModel) -> list[list[int]]:
    usable = [i for i, char in enumerate(model.vocab) if len(char) == 1]
    rng = np.random.default_rng(0)
    return [rng.choice(usable, size=n).tolist() for n in (1, 7, 60)]


def assert_same_predictions(before: LSTMModel, after: LSTMModel, atol: float = 0.0) -> None:
    assert after.vocab == before.vocab
    assert (after.mode, after.window) == (before.mode, before.window)
    for ids in probe_ids(before):
        expected = next_probabilities(before, ids)
        got = next_probabilities(after, ids)
        if atol == 0.0:
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, atol=atol)


def test_tfjs_export_of_an_ml5_style_model(tmp_path: Path) -> None:
    source = write_tiny_model(tmp_path / "ml5")
    before = load_model(source)
    notes, change = export_model(source, "tfjs", tmp_path / "tfjs")
    assert notes == [] and change == 0.0
    after = load_model(tmp_path / "tfjs")
    assert after.format == "tfjs"
    assert_same_predictions(before, after)
    document = json.loads((tmp_path / "tfjs" / "model.json").read_text(encoding="utf-8"))
    assert document["format"] == "layers-model"
    assert [layer["class_name"] for layer in document["modelTopology"]["config"]["layers"]] == [
        "Embedding",
        "LSTM",
        "Dense",
    ]
    charset = json.loads((tmp_path / "tfjs" / "charset.json").read_text(encoding="utf-8"))
    assert charset == list(before.vocab)


def test_tfjs_shards_large_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("training.export.SHARD_BYTES", 4096)
    before = load_model(write_tiny_model(tmp_path / "ml5"))
    write_tfjs(before, tmp_path / "tfjs")
    shards = sorted(p.name for p in (tmp_path / "tfjs").glob("group1-shard*"))
    assert len(shards) > 2 and shards[0] == f"group1-shard1of{len(shards)}.bin"
    assert_same_predictions(before, load_model(tmp_path / "tfjs"))


def test_export_refuses_to_overwrite_its_source(tmp_path: Path) -> None:
    source = write_tiny_model(tmp_path / "ml5")
    with pytest.raises(TrainingError, match="the source model's own folder"):
        export_model(source, "tfjs", source)


def test_export_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_tiny_model(tmp_path / "ml5")
    assert main(["export", str(source), "--format", "tfjs", str(tmp_path / "out")]) == 0
    assert "largest probability change 0" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nope"), "--format", "tfjs", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.shared_models
@pytest.mark.parametrize("name", ["ml5_darwin", "jessvb_nietzsche", "reiinakano_nietzsche"])
def test_tfjs_export_of_reference_models(shared_dir: Path, name: str, tmp_path: Path) -> None:
    before = load_model(shared_dir / "models" / name)
    notes, change = export_model(shared_dir / "models" / name, "tfjs", tmp_path / name)
    assert notes == [] and change == 0.0
    assert_same_predictions(before, load_model(tmp_path / name))


@pytest.mark.tensorflow
def test_keras_export_of_an_ml5_style_model(tmp_path: Path) -> None:
    source = write_tiny_model(tmp_path / "ml5")
    export_model(source, "keras", tmp_path / "keras")
    after = load_model(tmp_path / "keras")
    assert after.format == "keras" and after.recurrent_activation == "sigmoid"
    assert_same_predictions(load_model(source), after)
    info = json.loads((tmp_path / "keras" / "training.json").read_text(encoding="utf-8"))
    assert info["exported_from"]["format"] == "ml5"


@pytest.mark.tensorflow
@pytest.mark.shared_models
@pytest.mark.parametrize("name", ["ml5_shakespeare", "jessvb_drseuss-20"])
def test_keras_export_of_reference_models(shared_dir: Path, name: str, tmp_path: Path) -> None:
    source = shared_dir / "models" / name
    before = load_model(source)
    notes, change = export_model(source, "keras", tmp_path / name)
    after = load_model(tmp_path / name)
    if before.recurrent_activation == "hard_sigmoid":
        # Keras 3 has only its own hard sigmoid: the gates are rescaled, equal to rounding.
        assert after.recurrent_activation == "hard_sigmoid_k3"
        assert len(notes) == 1 and "scaled by 1.2" in notes[0]
        assert change < 1e-5
        assert_same_predictions(before, after, atol=1e-5)
    else:
        assert notes == [] and change == 0.0
        assert after.warnings == before.warnings  # the upstream vocabulary defect stays visible
        assert_same_predictions(before, after)
