"""Read the vocabulary files found next to models: JSON lists and maps, and JS modules."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from shared.engine.model import ModelLoadError

# Sidecar names in the order they are preferred when a folder holds several.
VOCAB_PATTERNS: tuple[str, ...] = (
    "vocab.json",
    "charset.json",
    "*-charset.txt",
    "*charset*.json",
    "*charset*.txt",
    "char_indices.js",
    "char_indices.json",
    "*.js",
)

_JS_ASSIGNMENT = re.compile(r"\bcharSet\s*=\s*(\[.*?\])\s*;?\s*(?:$|\n)", re.DOTALL)
_JS_PREFIX = re.compile(r"^\s*(?:export\s+default|module\.exports\s*=|(?:const|let|var)\s+\w+\s*=)")


def find_vocab_file(folder: Path) -> Path | None:
    """Return the vocabulary sidecar in a folder, or None when there is none."""
    for pattern in VOCAB_PATTERNS:
        for candidate in sorted(folder.glob(pattern)):
            if candidate.is_file() and (pattern != "*.js" or _looks_like_charset_js(candidate)):
                return candidate
    return None


def _looks_like_charset_js(path: Path) -> bool:
    if path.name.startswith("indices_char"):
        return False
    text = path.read_text(encoding="utf-8", errors="replace")
    return bool(_JS_ASSIGNMENT.search(text))


def read_vocab_file(path: Path) -> tuple[tuple[str, ...], list[str]]:
    """Read a vocabulary sidecar into (index -> char, warnings), whatever its known layout."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelLoadError(path, "vocabulary file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(path, f"cannot read vocabulary: {error}") from None
    return vocab_from_value(_parse(text, path), path)


def _parse(text: str, path: Path) -> Any:
    match = _JS_ASSIGNMENT.search(text)
    body = match.group(1) if match else _JS_PREFIX.sub("", text, count=1).strip().rstrip(";")
    try:
        return json.loads(body, object_pairs_hook=_PairList)
    except json.JSONDecodeError:
        pass
    try:
        # JavaScript array literals with single-quoted strings are Python literals too.
        return ast.literal_eval(body)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ModelLoadError(path, "not a JSON list or object of characters") from None


class _PairList(list[tuple[str, Any]]):
    """Key/value pairs of a JSON object in file order, keeping repeated keys."""


def vocab_from_value(value: Any, path: Path) -> tuple[tuple[str, ...], list[str]]:
    """Turn a parsed list or char -> id object into (index -> char, warnings)."""
    if isinstance(value, dict):
        value = _PairList(value.items())
    if isinstance(value, _PairList):
        return _from_pairs(list(value), path)
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        if not value:
            raise ModelLoadError(path, "the vocabulary is empty")
        return tuple(value), []
    raise ModelLoadError(path, "expected a list of characters or an object char -> index")


def _from_pairs(pairs: list[tuple[str, Any]], path: Path) -> tuple[tuple[str, ...], list[str]]:
    if pairs and all(k.isdigit() and isinstance(v, str) for k, v in pairs):
        pairs = [(v, int(k)) for k, v in pairs]  # an index -> char object
    if not pairs or not all(isinstance(v, int) and not isinstance(v, bool) for _, v in pairs):
        raise ModelLoadError(path, "expected an object mapping each character to an integer id")
    warnings: list[str] = []
    by_id: dict[int, str] = {}
    seen: set[str] = set()
    for char, index in pairs:
        if char in seen:
            warnings.append(f"{path.name}: key {char!r} appears more than once")
        seen.add(char)
        if index in by_id:
            warnings.append(
                f"{path.name}: id {index} is given to both {by_id[index]!r} and {char!r}"
            )
            continue
        by_id[index] = char
    size = max(by_id) + 1
    missing = sorted(set(range(size)) - set(by_id))
    if min(by_id) < 0 or missing:
        raise ModelLoadError(path, f"ids must run from 0 to {size - 1}; missing {missing[:10]}")
    return tuple(by_id[i] for i in range(size)), warnings
