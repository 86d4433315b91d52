"""Corpus checks, example cutting and the standard-library text: no TensorFlow needed."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from training.config import TrainConfig
from training.corpus import CorpusError, read_corpus
from training.data import TooShortError, encode, sequences, training_sets, windows
from training.stdlib_corpus import build_corpus


def test_read_corpus_records_hash_size_and_charset(tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_bytes("ba\r\nc\u00e9\n".encode())
    corpus = read_corpus(path)
    assert corpus.text == "ba\nc\u00e9\n"
    assert corpus.charset == ("\n", "a", "b", "c", "\u00e9")
    assert corpus.size_bytes == 8
    assert len(corpus.sha256) == 64
    assert read_corpus(path, max_chars=2).text == "ba"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\n\t ", "is empty"),
        (b"text\x00more", "looks binary (a NUL byte at offset 4)"),
        (b"caf\xe9 au lait", "is not UTF-8 text (invalid byte at offset 3)"),
        (bytes(range(1, 256)), "is not UTF-8 text"),
    ],
)
def test_bad_corpus_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=re.escape(message)) as caught:
        read_corpus(path)
    assert str(path) in str(caught.value)


def test_missing_corpus_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        read_corpus(tmp_path / "absent.txt")
    with pytest.raises(CorpusError, match="is a folder"):
        read_corpus(tmp_path)


def test_too_many_distinct_characters(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_text("".join(chr(0x4E00 + i) for i in range(600)), encoding="utf-8")
    with pytest.raises(CorpusError, match="600 distinct characters, more than the limit of 512"):
        read_corpus(path)
    assert len(read_corpus(path, max_vocab=600).charset) == 600


def test_sequences_shift_targets_by_one() -> None:
    ids = np.arange(11, dtype=np.int32)
    examples = sequences(ids, 4)
    assert examples.x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert examples.y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_windows_target_the_next_character() -> None:
    ids = np.arange(10, dtype=np.int32)
    examples = windows(ids, 4, 3)
    assert examples.x.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6]]
    assert examples.y.tolist() == [4, 7]


def test_validation_comes_from_the_end_of_the_text() -> None:
    ids = encode("abcdefghij" * 10, tuple("abcdefghij"))
    train, val = training_sets(ids, "stateful", 9, 1, 0.2)
    assert val is not None
    assert len(train) == 8 and len(val) == 2
    assert train.x.size + val.x.size <= ids.size


@pytest.mark.parametrize(("length", "fraction"), [(20, 0.0), (10, 0.5)])
def test_text_shorter_than_a_sequence(length: int, fraction: float) -> None:
    ids = np.zeros(15, dtype=np.int32)
    with pytest.raises(TooShortError, match="15 characters"):
        training_sets(ids, "stateful", length, 1, fraction)


def test_config_rejects_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="validation_split"):
        TrainConfig(validation_split=1.0)
    with pytest.raises(ValueError, match="layers"):
        TrainConfig(layers=())


def test_stdlib_corpus_is_deterministic_ascii_python() -> None:
    text, files = build_corpus(60_000)
    assert (text, files) == build_corpus(60_000)
    assert files >= 2
    assert 40_000 < len(text) <= 60_000
    assert text.isascii()
    assert "def " in text and "\n    " in text
