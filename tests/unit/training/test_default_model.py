"""The committed default model: small, stateful, and writing text shaped like Python."""

from __future__ import annotations

import json

from shared.engine.batch import generate
from shared.engine.loaders import load_model
from shared.engine.model import Mode
from shared.engine.sampling import SamplingParams
from tests.conftest import ROOT

DEFAULT = ROOT / "models" / "default"


def test_default_model_is_small_stateful_and_recorded() -> None:
    model = load_model(DEFAULT)
    assert model.format == "keras" and model.mode is Mode.STATEFUL
    assert {"\n", " ", "(", ")", ":", "_"} <= set(model.vocab)
    assert sum(p.stat().st_size for p in DEFAULT.iterdir()) < 5 * 2**20
    info = json.loads((DEFAULT / "training.json").read_text(encoding="utf-8"))
    assert info["corpus"]["path"] == "build/stdlib.txt"
    assert 0 < info["final"]["val_loss_bpc"] < 2.5


def test_default_model_writes_python_like_text() -> None:
    model = load_model(DEFAULT)
    params = SamplingParams(length=400, temperature=0.5)
    text = "def " + generate(model, "def ", params, random_seed=7).text
    assert "\n    " in text  # indented blocks
    assert text.count("(") >= 2 and ":" in text
    assert any(word in text for word in ("self", "return", "if ", "for ", "import"))
