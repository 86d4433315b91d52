"""The README's map of the packages names every module, and only paths that exist."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("api", "worker", "shared", "training", "scripts", "bench")


def mapped_paths() -> set[Path]:
    """Return the paths the "Where things are" table names (globs expanded)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### Where things are", 1)[1].split("\n\n", 2)[1]
    found: set[Path] = set()
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1]
        names = re.findall(r"`([^`]+)`", cell)
        folder = Path(names[0]).parent
        for name in names:
            path = Path(name) if name.split("/")[0] in PACKAGES else folder / name
            matches = sorted(ROOT.glob(str(path))) if "*" in name else [ROOT / path]
            assert matches and all(m.exists() for m in matches), f"README names {name}"
            found.update(matches)
    return found


def covered(module: Path, mapped: set[Path]) -> bool:
    """Return whether a module is named itself or lies in a named folder."""
    return module in mapped or any(folder in module.parents for folder in mapped)


def test_every_module_is_on_the_readme_map() -> None:
    mapped = mapped_paths()
    modules = [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py"
    ]
    missing = [str(m.relative_to(ROOT)) for m in modules if not covered(m, mapped)]
    assert missing == []
