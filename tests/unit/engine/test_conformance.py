"""The engine against the recorded outputs of the original ml5 and tfjs code (../shared/oracle)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from shared.engine.batch import Batch, next_probabilities
from shared.engine.model import ZERO_INPUT
from shared.engine.sampling import SamplingParams
from tests.unit.engine.conftest import oracle_names

pytestmark = pytest.mark.shared_models


def _seed_ids(record: dict[str, Any]) -> list[int]:
    # ml5 fed a zero vector for a seed character outside its vocabulary (ml5_shakespeare's "u").
    return [ZERO_INPUT if i is None else i for i in record["seedIds"]]


@pytest.mark.parametrize("name", oracle_names())
def test_greedy_continuation_is_identical(name: str, reference_model: Any, oracle: Any) -> None:
    model, record = reference_model(name), oracle(name)
    params = SamplingParams(length=len(record["greedyIds"]), temperature=0)
    batch = Batch(model, capacity=1)
    batch.add("greedy", _seed_ids(record), params, random_seed=0)
    finished = []
    while not finished:
        finished = batch.step()
    expected = record["greedy"]
    assert finished[0].text == expected


@pytest.mark.parametrize("name", oracle_names())
def test_step_probabilities_within_1e_5(name: str, reference_model: Any, oracle: Any) -> None:
    model, record = reference_model(name), oracle(name)
    ids = _seed_ids(record)
    for step in record["steps"]:
        k = step["step"]
        probs = next_probabilities(model, ids + record["greedyIds"][:k])
        expected = np.array(step["probs"], dtype=np.float64)
        np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)
        assert int(np.argmax(probs)) == step["argmax"]


def _replay(recorded: npt.NDArray[np.float64]) -> Any:
    def source(seeds: Any, streams: Any, steps: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return recorded[steps]

    return source


@pytest.mark.parametrize("name", [n for n in oracle_names() if n.startswith("ml5_")])
def test_ml5_sampled_runs_replay_exactly(name: str, reference_model: Any, oracle: Any) -> None:
    model, record = reference_model(name), oracle(name)
    for run in record["sampled"]:
        uniforms = np.array(run["uniforms"], dtype=np.float64)
        params = SamplingParams(length=len(uniforms), temperature=run["temperature"])
        batch = Batch(model, capacity=1, uniforms=_replay(uniforms))
        batch.add("sampled", _seed_ids(record), params, random_seed=run["rngSeed"])
        finished = []
        while not finished:
            finished = batch.step()
        assert finished[0].text == run["sample"], run["temperature"]


def test_tfjs_examples_greedy_matches(reference_model: Any, oracle: Any) -> None:
    model, record = reference_model("jessvb_nietzsche"), oracle("jessvb_nietzsche")
    greedy = next(r for r in record["tfjsExamples"] if r["temperature"] == 0)
    params = SamplingParams(length=len(greedy["generated"]), temperature=0)
    batch = Batch(model, capacity=1)
    batch.add("tfjs", model.encode(record["seedText"]), params, random_seed=0)
    finished = []
    while not finished:
        finished = batch.step()
    assert finished[0].text == greedy["generated"]
