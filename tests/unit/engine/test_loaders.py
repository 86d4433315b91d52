"""Loading every format and layout, the vocabulary sidecars, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.engine.batch import generate, next_probabilities
from shared.engine.loaders import load_model
from shared.engine.loaders.vocab import read_vocab_file
from shared.engine.model import Mode, ModelLoadError
from shared.engine.sampling import SamplingParams
from tests.unit.engine.conftest import reference_names
from tests.unit.engine.factories import VOCAB, random_weights, raw_reference, write_ml5, write_tfjs

PROBE = [2, 3, 1, 4, 0, 8, 5, 6, 2, 7]  # ids fed before reading the distribution


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.mark.shared_models
@pytest.mark.parametrize("name", reference_names())
def test_every_reference_model_loads_and_generates(name: str, reference_model: Any) -> None:
    model = reference_model(name)
    result = generate(model, "", SamplingParams(length=30, temperature=0.5), random_seed=3)
    assert len(result.texts[0]) >= 29  # ml5_shakespeare's id 40 decodes to ""
    props = model.properties()
    assert props["vocab_size"] == len(props["vocab"]) == model.output_bias.shape[0]
    assert props["cells_amount"] == len(props["layer_sizes"]) >= 1
    assert props["defaults"] == {"seed": "a", "length": 20, "temperature": 0.5}


@pytest.mark.shared_models
def test_reference_model_kinds(reference_model: Any) -> None:
    bolano = reference_model("ml5_bolano")
    assert (bolano.format, bolano.mode, bolano.embedding.shape) == (
        "ml5",
        Mode.STATEFUL,
        (116, 256),
    )
    assert [layer.units for layer in bolano.layers] == [256, 256]
    for name in (
        "jessvb_nietzsche",
        "jessvb_drseuss-20",
        "jessvb_narnia-1-20",
        "reiinakano_nietzsche",
    ):
        model = reference_model(name)
        assert (model.format, model.mode, model.window) == ("tfjs", Mode.WINDOW, 40)
        assert model.recurrent_activation == "hard_sigmoid"
    assert reference_model("jessvb_nietzsche").vocab[6] == "\n"
    assert reference_model("reiinakano_nietzsche").vocab[:3] == ("\n", " ", "!")
    assert reference_model("jessvb_drseuss-20").vocab_size == 49


@pytest.mark.shared_models
def test_shakespeare_vocab_defect_is_reported(reference_model: Any) -> None:
    model = reference_model("ml5_shakespeare")
    assert model.vocab[13] == "  " and model.vocab[40] == ""
    joined = " ".join(model.warnings)
    assert "id 13" in joined and "id 40" in joined


@pytest.mark.parametrize("old_names", [False, True])
@pytest.mark.parametrize("embedding", [None, 5])
def test_ml5_layouts_match_the_cell_formula(
    tmp_path: Path, rng: np.random.Generator, old_names: bool, embedding: int | None
) -> None:
    weights = random_weights(rng, len(VOCAB), [6, 4], embedding)
    model = load_model(write_ml5(tmp_path / "m", weights, VOCAB, old_names=old_names))
    assert model.format == "ml5" and model.mode is Mode.STATEFUL
    expected = raw_reference(weights, PROBE, forget_bias=1.0, activation="sigmoid")
    np.testing.assert_allclose(next_probabilities(model, PROBE), expected, atol=1e-6)


TFJS_LAYOUTS = [
    {},
    {"wrapped": False},
    {"dict_config": False},
    {"wrapped": False, "dict_config": False},
    {"dense_first": True},
    {"two_groups": True, "separate_softmax": True},
    {"dense_first": True, "two_groups": True},
]


@pytest.mark.parametrize("layout", TFJS_LAYOUTS)
@pytest.mark.parametrize("sizes", [[5], [6, 4]])
def test_tfjs_layouts_match_the_cell_formula(
    tmp_path: Path, rng: np.random.Generator, layout: dict[str, Any], sizes: list[int]
) -> None:
    weights = random_weights(rng, len(VOCAB), sizes, None)
    folder = write_tfjs(tmp_path / "m", weights, VOCAB, window=6, **layout)
    (folder / "charset.json").write_text(json.dumps(VOCAB), encoding="utf-8")
    model = load_model(folder)
    assert (model.mode, model.window, model.vocab) == (Mode.WINDOW, 6, tuple(VOCAB))
    expected = raw_reference(weights, PROBE, forget_bias=0.0, activation="hard_sigmoid", window=6)
    np.testing.assert_allclose(next_probabilities(model, PROBE), expected, atol=1e-6)


def _char_indices_js(folder: Path) -> None:
    body = json.dumps({c: i for i, c in enumerate(VOCAB)})
    (folder / "char_indices.js").write_text(f"export default\n{body}\n", encoding="utf-8")


def _charset_assignment(folder: Path) -> None:
    items = ", ".join(json.dumps(c) for c in VOCAB)
    text = f"// written by the model creator\nconst charSet = [{items}];\n"
    (folder / "charset.js").write_text(text, encoding="utf-8")


def _charset_txt(folder: Path) -> None:
    (folder / "book-charset.txt").write_text(json.dumps(VOCAB), encoding="utf-8")


def _object_json(folder: Path) -> None:
    mapping = {c: i for i, c in reversed(list(enumerate(VOCAB)))}
    (folder / "charset.json").write_text(json.dumps(mapping), encoding="utf-8")


@pytest.mark.parametrize(
    "write_sidecar", [_char_indices_js, _charset_assignment, _charset_txt, _object_json]
)
def test_tfjs_vocabulary_sidecars(
    tmp_path: Path, rng: np.random.Generator, write_sidecar: Any
) -> None:
    folder = write_tfjs(tmp_path / "m", random_weights(rng, len(VOCAB), [4], None), VOCAB)
    write_sidecar(folder)
    assert load_model(folder).vocab == tuple(VOCAB)


def test_vocab_single_quoted_js_and_index_objects(tmp_path: Path) -> None:
    js = tmp_path / "chars.js"
    js.write_text("var charSet = ['a', 'b', '\\n'];", encoding="utf-8")
    assert read_vocab_file(js)[0] == ("a", "b", "\n")
    indices = tmp_path / "indices_char.json"
    indices.write_text('{"1": "b", "0": "a"}', encoding="utf-8")
    assert read_vocab_file(indices)[0] == ("a", "b")


def test_vocab_duplicate_keys_warn(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    path.write_text('{"a": 0, "b": 1, "a": 2}', encoding="utf-8")
    vocab, warnings = read_vocab_file(path)
    assert vocab == ("a", "b", "a") and "more than once" in warnings[0]


# --- errors: each names the file and the problem --------------------------------------------


def _ml5(tmp_path: Path, rng: np.random.Generator) -> Path:
    return write_ml5(tmp_path / "m", random_weights(rng, len(VOCAB), [4], 3), VOCAB)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no such file"):
        load_model(tmp_path / "nothing")


def test_missing_weight_file(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = _ml5(tmp_path, rng)
    (folder / "rnnlm_softmax_w").unlink()
    with pytest.raises(ModelLoadError, match=r"rnnlm_softmax_w.*not found"):
        load_model(folder)


def test_missing_vocab(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = _ml5(tmp_path, rng)
    (folder / "vocab.json").unlink()
    with pytest.raises(ModelLoadError, match=r"vocab.json"):
        load_model(folder)


def test_truncated_ml5_variable(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = _ml5(tmp_path, rng)
    path = folder / "embedding"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ModelLoadError, match=r"embedding: truncated"):
        load_model(folder)


def test_shape_not_matching_manifest(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = _ml5(tmp_path, rng)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["embedding"]["shape"] = [len(VOCAB), 2]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"embedding: too long"):
        load_model(folder)


def test_weights_that_do_not_fit_each_other(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = _ml5(tmp_path, rng)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["rnnlm/softmax_b"]["shape"] = [3, 3]  # same byte count, wrong shape
    (folder / "rnnlm_softmax_b").write_bytes(np.zeros(9, "<f4").tobytes())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"do not fit.*output_bias"):
        load_model(folder)


def test_truncated_tfjs_shard(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = write_tfjs(tmp_path / "m", random_weights(rng, len(VOCAB), [4], None), VOCAB)
    (folder / "charset.json").write_text(json.dumps(VOCAB))
    shard = folder / "group1-shard1of1"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match=r"group1-shard1of1: truncated"):
        load_model(folder)


def test_unknown_layer_type(tmp_path: Path, rng: np.random.Generator) -> None:
    extra = [{"class_name": "GRU", "config": {"name": "gru_1"}}]
    weights = random_weights(rng, len(VOCAB), [4], None)
    folder = write_tfjs(tmp_path / "m", weights, VOCAB, extra_layers=extra)
    (folder / "charset.json").write_text(json.dumps(VOCAB))
    with pytest.raises(ModelLoadError, match=r"model.json: unknown layer type 'GRU'"):
        load_model(folder)


def test_tfjs_vocab_size_mismatch(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = write_tfjs(tmp_path / "m", random_weights(rng, len(VOCAB), [4], None), VOCAB)
    (folder / "charset.json").write_text(json.dumps(VOCAB[:-1]))
    with pytest.raises(ModelLoadError, match=r"model.json"):
        load_model(folder)


def test_bad_json(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = _ml5(tmp_path, rng)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"manifest.json: not valid JSON"):
        load_model(folder)


def test_not_a_model_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match=r"not a model folder"):
        load_model(tmp_path)
