"""What the API knows of the model directory: each model read once, however many ask at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from api import directory_models
from api.directory_models import DirectoryModels

CALLERS = 8


def test_callers_asking_together_wait_for_one_read_of_the_model(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrived = threading.Semaphore(0)
    reads: list[str] = []
    stamp, load = directory_models.model_stamp, directory_models.load_model

    def counted_stamp(path: Path) -> float:
        arrived.release()  # a caller has entered info()
        return stamp(path)

    def held_load(path: Path, **options: Any) -> Any:
        reads.append(path.name)
        for _ in range(CALLERS):  # every caller is in info() before the first read ends
            assert arrived.acquire(timeout=30)
        return load(path, **options)

    monkeypatch.setattr(directory_models, "model_stamp", counted_stamp)
    monkeypatch.setattr(directory_models, "load_model", held_load)
    models = DirectoryModels(model_dir)
    found: list[Any] = []
    callers = [
        threading.Thread(target=lambda: found.append(models.info("tiny"))) for _ in range(CALLERS)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert reads == ["tiny"]
    assert len(found) == CALLERS and all(info == found[0] for info in found)
    assert len(found[0].vocab) > 0
