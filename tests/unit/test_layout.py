"""The package layout: what lives where, and which processes import what."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import shared.client
import shared.client.http
from tests.conftest import ROOT

PACKAGES = ("api", "worker", "shared")
CROSS_CUTTING = {"settings", "logs", "metrics", "celery_app", "redis_connection", "predictions"}
# The API runs no model: no worker code, no TensorFlow, no compiler (numba), no HDF5 reader.
HEAVY = ("worker", "tensorflow", "numba", "llvmlite", "h5py")
IMPORTED = "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r}))"


def packages() -> Iterator[Path]:
    """Yield the folder of every package and sub-package under api/, worker/ and shared/."""
    for top in PACKAGES:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            yield init.parent


def modules() -> Iterator[Path]:
    for top in PACKAGES:
        yield from sorted((ROOT / top).rglob("*.py"))


def test_shared_top_level_modules_are_the_cross_cutting_ones() -> None:
    found = {path.stem for path in (ROOT / "shared").glob("*.py")}
    assert found == CROSS_CUTTING | {"__init__"}


def test_shared_sub_packages_are_engine_jobs_webhooks_client_catalog_and_trainings() -> None:
    found = {path.name for path in (ROOT / "shared").iterdir() if (path / "__init__.py").is_file()}
    assert found == {"engine", "jobs", "webhooks", "client", "catalog", "trainings"}


@pytest.mark.parametrize("package", list(packages()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_has_a_docstring(package: Path) -> None:
    source = (package / "__init__.py").read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(source)), f"{package.relative_to(ROOT)} has no docstring"


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path in modules()
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert missing == []


def test_the_client_exports_exactly_the_public_names_of_its_http_module() -> None:
    http = shared.client.http
    defined = {
        name
        for name, value in vars(http).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == http.__name__
    }
    assert sorted(shared.client.__all__) == sorted(set(shared.client.__all__))  # no repeats
    assert set(shared.client.__all__) == defined
    for name in shared.client.__all__:
        assert getattr(shared.client, name) is getattr(http, name)


def test_the_client_package_has_no_public_name_outside_all() -> None:
    public = {
        name
        for name, value in vars(shared.client).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(shared.client.__all__)


def imported_roots(statement: str) -> subprocess.Popen[str]:
    """Start a fresh interpreter that runs `statement` and prints the heavy modules it loaded."""
    code = f"{statement}; {IMPORTED.format(roots=HEAVY)}"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def imports() -> dict[str, tuple[int, list[str], str]]:
    """Import the API, the generation worker and a training run, each in its own
    interpreter, in parallel."""
    started = {
        "api": imported_roots("import api.app"),
        "worker": imported_roots("import worker.runtime, worker.tasks, worker.training_worker"),
        "training": imported_roots("import worker.training_run"),
    }
    results = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=120)
        loaded = ast.literal_eval(out.strip()) if process.returncode == 0 else []
        results[name] = (process.returncode, loaded, err)
    return results


def test_the_api_imports_neither_the_worker_nor_tensorflow_nor_numba(
    imports: dict[str, tuple[int, list[str], str]],
) -> None:
    code, loaded, err = imports["api"]
    assert code == 0, err
    assert loaded == []


def test_generation_workers_do_not_import_tensorflow(
    imports: dict[str, tuple[int, list[str], str]],
) -> None:
    code, loaded, err = imports["worker"]
    assert code == 0, err
    assert "worker.runtime" in loaded  # the check itself sees what was imported
    assert [name for name in loaded if name.split(".")[0] == "tensorflow"] == []


def test_only_a_training_run_imports_tensorflow(
    imports: dict[str, tuple[int, list[str], str]],
) -> None:
    code, loaded, err = imports["training"]
    assert code == 0, err
    assert "tensorflow" in loaded  # the training task imports it when a training runs


def test_the_api_never_imports_the_check_that_loads_uploaded_models() -> None:
    code = "import api.app, sys; print('shared.catalog.inspect' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
