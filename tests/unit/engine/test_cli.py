"""The `lstmgen` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.unit.engine.factories import VOCAB, random_weights, write_ml5


def _run(*args: str, model_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if model_dir is not None:
        env["LSTMGEN_MODEL_DIR"] = str(model_dir)
    return subprocess.run(
        [sys.executable, "-m", "shared.client.cli", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_ml5(folder / "tiny", random_weights(np.random.default_rng(2), len(VOCAB), [8], 4), VOCAB)
    return folder


def test_generate_json_is_reproducible(model_dir: Path) -> None:
    args = ["generate", str(model_dir / "tiny"), "--seed", "abc", "--length", "30", "--json"]
    first = _run(*args, "--random-seed", "17")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["random_seed"] == 17 and len(report["text"]) == 30
    assert report["finish_reason"] == "length"
    again = json.loads(_run(*args, "--random-seed", "17").stdout)
    assert again["text"] == report["text"]
    fresh = json.loads(_run(*args).stdout)
    repeat = json.loads(_run(*args, "--random-seed", str(fresh["random_seed"])).stdout)
    assert repeat["text"] == fresh["text"]


def test_generate_by_name_with_n_samples_and_stop(model_dir: Path) -> None:
    result = _run(
        "generate", "tiny", "--seed", "ab", "--length", "40", "--n", "3", "--top-k", "4",
        "--top-p", "0.9", "--temperature", "1.2", "--stop", "\\n", "--random-seed", "5",
        "--json", model_dir=model_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["texts"]) == 3 and len(report["finish_reasons"]) == 3
    assert all("\n" not in text for text in report["texts"])


def test_predict_and_inspect(model_dir: Path) -> None:
    result = _run("predict", "tiny", "--seed", "ab", "--top", "3", "--json", model_dir=model_dir)
    assert result.returncode == 0, result.stderr
    probs = json.loads(result.stdout)["probabilities"]
    assert len(probs) == 3 and probs[0]["probability"] >= probs[1]["probability"]
    assert probs[0]["char"] in VOCAB
    info = json.loads(_run("inspect", "tiny", "--json", model_dir=model_dir).stdout)
    assert info["vocab"] == VOCAB and info["cells_amount"] == 1 and info["layer_sizes"] == [8]
    assert info["format"] == "ml5" and info["mode"] == "stateful"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "missing-model"], "unknown model 'missing-model'"),
        (["generate", "tiny", "--seed", "aXb"], "not in the model's vocabulary: 'X'"),
        (["generate", "tiny", "--length", "0"], "length must be"),
        (["predict", "tiny", "--temperature", "-1"], "temperature must be"),
    ],
)
def test_errors_are_one_line_with_status_2(model_dir: Path, args: list[str], message: str) -> None:
    result = _run(*args, model_dir=model_dir)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_broken_model_file_is_named(tmp_path: Path) -> None:
    folder = write_ml5(
        tmp_path / "m", random_weights(np.random.default_rng(2), len(VOCAB), [8], 4), VOCAB
    )
    (folder / "embedding").write_bytes(b"\x00" * 8)
    result = _run("inspect", str(folder))
    assert result.returncode == 2 and "embedding: truncated" in result.stderr
