"""Batched generation: a sequence's output is the same alone and in any batch, at any join step."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.engine.batch import (
    CHUNK,
    MAX_STEPS,
    Batch,
    Finished,
    FinishReason,
    Pacer,
    generate,
    next_probabilities,
    predict,
)
from shared.engine.loaders import load_model
from shared.engine.model import LSTMLayer, LSTMModel, Mode, UnknownCharactersError
from shared.engine.sampling import SamplingParams
from tests.unit.engine.factories import VOCAB, random_weights, write_ml5

VOCAB_TEXT = "abcdefgh ij.\n"


def _model(mode: Mode, activation: str = "sigmoid", seed: int = 3) -> LSTMModel:
    rng = np.random.default_rng(seed)
    vocab = tuple(VOCAB_TEXT)
    sizes = [24, 20]
    inputs = 6
    layers = []
    for units in sizes:
        kernel = rng.normal(0, 0.6, (inputs + units, 4 * units)).astype(np.float32)
        layers.append(LSTMLayer(kernel, rng.normal(0, 0.3, 4 * units).astype(np.float32)))
        inputs = units
    return LSTMModel(
        name=f"tiny-{mode}",
        format="ml5",
        source=Path("."),
        vocab=vocab,
        embedding=rng.normal(0, 1, (len(vocab), 6)).astype(np.float32),
        layers=tuple(layers),
        recurrent_activation=activation,
        output_kernel=rng.normal(0, 1.5, (sizes[-1], len(vocab))).astype(np.float32),
        output_bias=rng.normal(0, 0.3, len(vocab)).astype(np.float32),
        mode=mode,
        window=5 if mode is Mode.WINDOW else None,
    )


STATEFUL = _model(Mode.STATEFUL)
WINDOW = _model(Mode.WINDOW, activation="hard_sigmoid")

PARAMS = [
    SamplingParams(length=40, temperature=0.8),
    SamplingParams(length=25, temperature=0),
    SamplingParams(length=60, temperature=1.3, top_k=3),
    SamplingParams(length=33, temperature=1.0, top_p=0.7),
    SamplingParams(length=50, temperature=0.9, top_k=4, top_p=0.9, stop=("ij", "\n")),
    SamplingParams(length=45, temperature=2.0, stop=("a",)),
]
SEEDS = ["a", "bc d", "hhhhhhhhhhh", "ij.\nab", "g"]


def _solo(model: LSTMModel, seed: str, params: SamplingParams, rs: int, stream: int) -> Finished:
    batch = Batch(model, capacity=1)
    batch.add("solo", model.encode(seed), params, rs, stream)
    while True:
        finished = batch.step()
        if finished:
            return finished[0]


def _jobs(count: int) -> list[tuple[str, SamplingParams, int, int]]:
    return [
        (SEEDS[i % len(SEEDS)], PARAMS[i % len(PARAMS)], 1000 + i // 3, i % 3) for i in range(count)
    ]


@pytest.mark.parametrize("model", [STATEFUL, WINDOW], ids=["stateful", "window"])
def test_batched_output_equals_solo_at_any_join_step(model: LSTMModel) -> None:
    jobs = _jobs(40)
    expected = {i: _solo(model, s, p, rs, st) for i, (s, p, rs, st) in enumerate(jobs)}
    batch = Batch(model, capacity=64)
    results: dict[Hashable, Finished] = {}
    pending = list(enumerate(jobs))
    step = 0
    while pending or len(batch):
        # Join a few sequences every other step, so they enter at different steps and sizes.
        if step % 2 == 0:
            for index, (seed, params, rs, stream) in pending[:5]:
                batch.add(index, model.encode(seed), params, rs, stream)
            pending = pending[5:]
        results.update((f.key, f) for f in batch.step())
        step += 1
    for index, solo in expected.items():
        assert results[index] == Finished(index, solo.text, solo.reason), index
    assert {f.reason for f in results.values()} == {FinishReason.LENGTH, FinishReason.STOP}


def _replayed(seeds: Any, streams: Any, steps: Any) -> Any:
    """A uniform source other than the compiled one: (seed, stream, step) hashed by numpy."""
    mixed = (seeds.astype(np.float64) * 7.31 + streams * 3.17 + steps * 0.618) % 1.0
    return mixed


@pytest.mark.parametrize("model", [STATEFUL, WINDOW], ids=["stateful", "window"])
@pytest.mark.parametrize("replay", [False, True], ids=["counter", "replayed"])
def test_calls_of_many_steps_equal_one_step_at_a_time(model: LSTMModel, replay: bool) -> None:
    # Long enough to cross decoded chunks, with stop sequences, joins between calls, rows
    # above the threaded threshold, and calls of every length up to MAX_STEPS.
    uniforms = _replayed if replay else None
    jobs = [
        (SEEDS[i % 5], replace_length(PARAMS[i % len(PARAMS)], 40 + 37 * i), 50 + i, i % 4)
        for i in range(24)
    ]

    def run(sizes: Any) -> dict[Hashable, Finished]:
        batch = Batch(model, capacity=24, uniforms=uniforms)
        results: dict[Hashable, Finished] = {}
        pending = list(enumerate(jobs))
        while pending or len(batch):
            for index, (seed, params, rs, stream) in pending[:3]:
                batch.add(index, model.encode(seed), params, rs, stream)
            pending = pending[3:]
            results.update((f.key, f) for f in batch.step(next(sizes)))
        return results

    rng = np.random.default_rng(5)
    single = run(iter(lambda: 1, None))
    many = run(iter(lambda: int(rng.integers(1, MAX_STEPS + 1)), None))
    assert many == single
    assert {f.reason for f in single.values()} == {FinishReason.LENGTH, FinishReason.STOP}
    assert max(len(f.text) for f in single.values()) > CHUNK


def replace_length(params: SamplingParams, length: int) -> SamplingParams:
    return SamplingParams(length, params.temperature, params.top_k, params.top_p, params.stop)


def test_a_call_stops_at_the_shortest_remaining_length() -> None:
    batch = Batch(STATEFUL, capacity=2)
    batch.add("short", STATEFUL.encode("a"), SamplingParams(length=5), 1)
    batch.add("long", STATEFUL.encode("a"), SamplingParams(length=500), 1)
    finished = batch.step(MAX_STEPS)
    assert batch.last_steps == 5 and [f.key for f in finished] == ["short"]
    assert batch.progress("long") == 5 and len(finished[0].text) == 5


@pytest.mark.parametrize("steps", [0, MAX_STEPS + 1, True, -1])
def test_step_counts_out_of_range_are_refused(steps: int) -> None:
    batch = Batch(STATEFUL, capacity=1)
    batch.add("k", STATEFUL.encode("a"), SamplingParams(length=5), 1)
    with pytest.raises(ValueError, match="steps"):
        batch.step(steps)
    assert batch.progress("k") == 0


def test_the_pacer_lengthens_calls_and_starts_over_when_the_batch_grows() -> None:
    batch = Batch(STATEFUL, capacity=64)
    params = SamplingParams(length=10**6)
    batch.add(0, STATEFUL.encode("a"), params, 1)
    pacer = Pacer(budget_s=1.0)  # far more than any call of this tiny model takes
    for _ in range(3):
        pacer.step(batch)
    assert pacer.steps == MAX_STEPS
    for key in range(1, 64):
        batch.add(key, STATEFUL.encode("a"), params, 1, key)
    pacer.step(batch)
    assert batch.last_steps == 1  # measured again before the longer calls
    assert Pacer(budget_s=0.0).step(batch) == [] and batch.last_steps == 1


def test_batch_larger_than_the_threaded_threshold_equals_solo() -> None:
    params = SamplingParams(length=12, temperature=1.0)
    batch = Batch(STATEFUL, capacity=100)
    for i in range(100):
        batch.add(i, STATEFUL.encode(SEEDS[i % 5]), params, 7, i)
    results: dict[Hashable, Finished] = {}
    while len(batch):
        results.update((f.key, f) for f in batch.step())
    for i in (0, 17, 63, 99):
        assert results[i].text == _solo(STATEFUL, SEEDS[i % 5], params, 7, i).text


def test_remove_returns_partial_text_and_keeps_the_others_exact() -> None:
    params = SamplingParams(length=30, temperature=0.7)
    batch = Batch(STATEFUL, capacity=4)
    for key in "abc":
        batch.add(key, STATEFUL.encode("ab"), params, 5, ord(key))
    for _ in range(10):
        batch.step()
    assert batch.progress("b") == 10
    partial = batch.remove("b")
    assert len(partial) == 10 and "b" not in batch and len(batch) == 2
    finished = []
    while len(batch):
        finished += batch.step()
    for item in finished:
        assert item.text == _solo(STATEFUL, "ab", params, 5, ord(str(item.key))).text
    assert _solo(STATEFUL, "ab", params, 5, ord("b")).text.startswith(partial)


def test_stop_sequences_end_early_and_are_not_included() -> None:
    params = SamplingParams(length=200, temperature=1.5, stop=("a",))
    result = _solo(STATEFUL, "b", params, 11, 0)
    free = _solo(STATEFUL, "b", SamplingParams(length=200, temperature=1.5), 11, 0)
    assert result.reason is FinishReason.STOP
    assert "a" not in result.text and free.text.startswith(result.text + "a")


def test_text_holds_back_a_possible_stop_start() -> None:
    free = _solo(STATEFUL, "b", SamplingParams(length=60, temperature=1.2), 2, 0).text
    # A stop made of a character that appears followed by one that never follows it here.
    first = free[5]
    stop = first + "\x00"
    batch = Batch(STATEFUL, capacity=1)
    batch.add(
        "k", STATEFUL.encode("b"), SamplingParams(length=60, temperature=1.2, stop=(stop,)), 2
    )
    for _ in range(6):
        batch.step()
    assert batch.text("k") == free[:5]  # the trailing `first` could still start the stop
    assert batch.progress("k") == 6


def test_text_from_an_offset_is_the_tail_of_the_whole_text() -> None:
    # Past several decoded chunks, with and without a stop sequence that holds text back.
    length = 3 * CHUNK + 40
    batch = Batch(STATEFUL, capacity=2)
    batch.add("free", STATEFUL.encode("b"), SamplingParams(length=length, temperature=1.2), 4)
    stopping = SamplingParams(length=length, temperature=1.2, stop=("hhhhhhhhhhhh",))
    batch.add("stop", STATEFUL.encode("b"), stopping, 4)
    for step in range(length - 1):
        batch.step()
        if step % 97 in (0, CHUNK % 97):
            for key in ("free", "stop"):
                whole = batch.text(key)
                for start in (0, 1, CHUNK - 1, CHUNK, len(whole) - 3, len(whole), len(whole) + 5):
                    assert batch.text(key, start=start) == whole[max(0, start) :]
    assert len(batch.text("free")) == length - 1


def test_generate_n_samples_are_streams_of_one_seed() -> None:
    params = SamplingParams(length=20, temperature=1.0)
    result = generate(STATEFUL, "ab", params, random_seed=42, n=3)
    assert result.random_seed == 42 and len(set(result.texts)) == 3
    for stream, text in enumerate(result.texts):
        assert text == _solo(STATEFUL, "ab", params, 42, stream).text
    assert generate(STATEFUL, "ab", params, random_seed=42, n=3) == result
    fresh = generate(STATEFUL, "ab", params)
    assert generate(STATEFUL, "ab", params, random_seed=fresh.random_seed) == fresh


def test_different_random_seeds_differ() -> None:
    params = SamplingParams(length=40, temperature=1.0)
    texts = {generate(STATEFUL, "a", params, random_seed=s).text for s in range(5)}
    assert len(texts) == 5


@pytest.mark.parametrize("seed", ["b", "bc", "abcd", "hhhhhhhhhhh"])
def test_greedy_matches_the_argmax_of_predict(seed: str) -> None:
    # Seeds shorter than, as long as and longer than the window (5): each character of a
    # window model comes from its own lane, which must have read exactly its window.
    text = generate(WINDOW, seed, SamplingParams(length=30, temperature=0)).text
    for k in range(30):
        top = predict(WINDOW, seed + text[:k], temperature=1.0)[0]
        assert top.char == text[k], k


def test_predict_is_sorted_and_sums_to_one() -> None:
    probs = predict(STATEFUL, "abc", temperature=0.7)
    values = [p.probability for p in probs]
    assert values == sorted(values, reverse=True) and abs(sum(values) - 1) < 1e-5
    assert {p.char for p in probs} == set(VOCAB_TEXT)
    greedy = predict(STATEFUL, "abc", temperature=0)
    assert greedy[0].probability == 1.0 and greedy[0].char == probs[0].char


def test_window_uses_the_last_window_characters() -> None:
    long_seed = "hhhhhhhhhh" + "abcde"
    assert np.array_equal(
        next_probabilities(WINDOW, WINDOW.encode(long_seed)),
        next_probabilities(WINDOW, WINDOW.encode("abcde")),
    )


def test_empty_seed_uses_the_default() -> None:
    params = SamplingParams(length=10, temperature=0.5)
    assert generate(STATEFUL, "", params, random_seed=1) == generate(
        STATEFUL, STATEFUL.defaults.seed, params, random_seed=1
    )


def test_unknown_seed_characters() -> None:
    params = SamplingParams(length=5, temperature=0)
    with pytest.raises(UnknownCharactersError) as caught:
        generate(STATEFUL, "abXyZ", params)
    assert caught.value.chars == ["X", "y", "Z"]
    dropped = generate(STATEFUL, "abXyZ", params, unknown="drop")
    assert dropped.text == generate(STATEFUL, "ab", params).text
    lowered = generate(STATEFUL, "ABc", params, unknown="lowercase")
    assert lowered.text == generate(STATEFUL, "abc", params).text
    with pytest.raises(UnknownCharactersError, match="'Z'"):
        generate(STATEFUL, "aZ", params, unknown="lowercase")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length": 0},
        {"length": -3},
        {"temperature": -1.0},
        {"top_k": 0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"stop": ("",)},
        {"temperature": float("nan")},
    ],
)
def test_invalid_sampling_params(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)


def test_batch_rejects_bad_input() -> None:
    batch = Batch(STATEFUL, capacity=1)
    with pytest.raises(ValueError, match="at least one"):
        batch.add("a", [], SamplingParams(), 1)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        batch.add("a", [99], SamplingParams(), 1)
    with pytest.raises(ValueError, match="random seed"):
        batch.add("a", [1], SamplingParams(), -1)
    batch.add("a", [1], SamplingParams(), 1)
    with pytest.raises(KeyError):
        batch.add("a", [1], SamplingParams(), 1)
    with pytest.raises(OverflowError):
        batch.add("b", [1], SamplingParams(), 1)
    assert batch.step() == [] and batch.progress("a") == 1


def test_ml5_files_round_trip_through_generate(tmp_path: Path) -> None:
    weights = random_weights(np.random.default_rng(1), len(VOCAB), [8], 4)
    model = load_model(write_ml5(tmp_path / "m", weights, VOCAB))
    result = generate(model, "abc", SamplingParams(length=15, temperature=0.9), random_seed=9)
    assert len(result.text) == 15 and result.finish_reasons == [FinishReason.LENGTH]


def test_batches_in_concurrent_threads_stay_exact() -> None:
    params = SamplingParams(length=15, temperature=1.0)
    results: dict[str, dict[Hashable, str]] = {}

    def run(name: str, model: LSTMModel) -> None:
        batch = Batch(model, capacity=32)
        for i in range(32):
            batch.add(i, model.encode(SEEDS[i % 5]), params, 3, i)
        done: dict[Hashable, str] = {}
        while len(batch):
            done.update((f.key, f.text) for f in batch.step())
        results[name] = done

    threads = [
        threading.Thread(target=run, args=("stateful", STATEFUL)),
        threading.Thread(target=run, args=("window", WINDOW)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for name, model in (("stateful", STATEFUL), ("window", WINDOW)):
        for i in (0, 9, 31):
            assert results[name][i] == _solo(model, SEEDS[i % 5], params, 3, i).text
