"""The compiled-kernel cache: one folder per engine source digest."""

from __future__ import annotations

from pathlib import Path

import numba
import pytest

from shared.engine import compile_cache, kernels


def test_the_cache_folder_is_named_after_the_engine_sources() -> None:
    assert compile_cache.cache_dir() == compile_cache.CACHE_ROOT / compile_cache.source_digest()
    assert compile_cache.source_digest() == compile_cache.source_digest()


def test_editing_any_engine_file_changes_the_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for source in compile_cache.ENGINE.glob("*.py"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(compile_cache, "ENGINE", tmp_path)
    before = compile_cache.source_digest()
    with (tmp_path / "sampling.py").open("a") as handle:
        handle.write("\n")
    assert compile_cache.source_digest() != before


def test_kernels_compile_into_the_chosen_folder() -> None:
    assert kernels.thread_count() >= 1
    assert numba.config.CACHE_DIR  # type: ignore[attr-defined]
