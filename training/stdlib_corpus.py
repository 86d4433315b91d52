"""Write a training text from the Python standard library's own source, as char-rnn's code demo.

The selection is deterministic for a given Python version: ASCII `.py` files outside tests and
data-table packages, ordered by a hash of their path (so the text samples the whole library
rather than the modules starting with "a"), concatenated until a size limit.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sysconfig
from pathlib import Path

# Folders that hold tests, generated tables or bundled third-party code, not typical Python.
SKIP_DIRS = frozenset(
    {
        "__pycache__", "test", "tests", "idle_test", "idlelib", "lib2to3", "turtledemo",
        "site-packages", "dist-packages", "encodings", "ensurepip", "pydoc_data",
    }
)  # fmt: skip
MAX_FILE_BYTES = 60_000  # larger files are mostly data, or would let one module dominate
SEPARATOR = "\n\n"
DEFAULT_MAX_CHARS = 2_000_000


def stdlib_root() -> Path:
    """Return the folder of this interpreter's standard library source."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[Path]:
    """List usable source files under root in the deterministic training order."""
    chosen = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith("config-") for part in relative.parts[:-1]):
            continue
        if path.is_file() and path.stat().st_size <= MAX_FILE_BYTES:
            chosen.append(relative)
    chosen.sort(key=lambda p: hashlib.sha256(p.as_posix().encode()).hexdigest())
    return [root / p for p in chosen]


def build_corpus(max_chars: int, root: Path | None = None) -> tuple[str, int]:
    """Concatenate whole ASCII files up to max_chars; return the text and the file count."""
    pieces: list[str] = []
    total = count = 0
    for path in stdlib_files(root or stdlib_root()):
        try:
            text = path.read_text(encoding="ascii").replace("\r\n", "\n").strip("\n") + "\n"
        except (UnicodeDecodeError, OSError):
            continue  # non-ASCII files would add rare characters the model cannot learn well
        if total + len(text) + len(SEPARATOR) > max_chars:
            continue
        pieces.append(text)
        total += len(text) + len(SEPARATOR)
        count += 1
    return SEPARATOR.join(pieces), count


def main(argv: list[str] | None = None) -> int:
    """Write the corpus to a file and say what went into it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="text file to write")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS)
    args = parser.parse_args(argv)
    text, count = build_corpus(args.max_chars)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    print(
        f"wrote {args.out}: {len(text)} characters from {count} files of Python "
        f"{platform.python_version()}'s standard library (sha256 {digest})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
