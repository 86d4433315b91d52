"""Read a training corpus and check it is usable text before any training starts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from training.errors import TrainingError

DEFAULT_MAX_VOCAB = 512


class CorpusError(TrainingError):
    """The corpus cannot be trained on; the message names the file and the reason."""


@dataclass(frozen=True)
class Corpus:
    """The text to train on and where it came from."""

    path: Path
    text: str  # the characters used (newlines normalised, cut to max_chars)
    sha256: str  # of the whole file's bytes, to recognise the corpus later
    size_bytes: int  # of the whole file

    @property
    def charset(self) -> tuple[str, ...]:
        """Return the distinct characters of the text, sorted."""
        return tuple(sorted(set(self.text)))


def read_corpus(
    path: Path, *, max_chars: int | None = None, max_vocab: int = DEFAULT_MAX_VOCAB
) -> Corpus:
    """Read a UTF-8 text file, refusing empty, binary and too-varied files."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(path, "no such file") from None
    except IsADirectoryError:
        raise CorpusError(path, "is a folder, not a text file") from None
    except OSError as error:
        raise CorpusError(path, f"cannot read: {error.strerror}") from None
    if not data.strip():
        raise CorpusError(path, "is empty")
    text = _decode(path, data).replace("\r\n", "\n")
    if max_chars is not None:
        text = text[:max_chars]
    chars = set(text)
    if len(chars) > max_vocab:
        raise CorpusError(
            path,
            f"has {len(chars)} distinct characters, more than the limit of {max_vocab} "
            "(raise --max-vocab, or clean the text)",
        )
    return Corpus(path, text, hashlib.sha256(data).hexdigest(), len(data))


def _decode(path: Path, data: bytes) -> str:
    # A NUL byte is valid UTF-8 but never appears in text: it marks a binary file.
    nul = data.find(b"\0")
    if nul >= 0:
        raise CorpusError(path, f"looks binary (a NUL byte at offset {nul}); expected UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(
            path, f"is not UTF-8 text (invalid byte at offset {error.start}); binary?"
        ) from None
