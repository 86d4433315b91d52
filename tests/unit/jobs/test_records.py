"""Job records and the Lua scripts that change them agree on their vocabulary."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest

from shared.jobs import keys
from shared.jobs import store as store_module
from shared.jobs.records import JobInput, JobStatus
from shared.jobs.scripts import PRELUDE, read_scripts
from shared.jobs.store import LUA

PRELUDE_SOURCE = (LUA / PRELUDE).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "spec",
    [
        JobInput(model="tiny", seed="", length=1, temperature=0.0),
        JobInput(
            model="tiny",
            seed="the ünïcode seed\n",
            length=500,
            temperature=0.75,
            top_k=5,
            top_p=0.9,
            stop=("\n\n", "end"),
            n=3,
            unknown_chars="lowercase",
            random_seed=2**64 - 1,
        ),
    ],
    ids=["defaults", "every-field"],
)
def test_job_input_survives_a_json_round_trip(spec: JobInput) -> None:
    stored = json.dumps(spec.to_json())
    assert JobInput.from_json(json.loads(stored)) == spec


def test_job_input_json_names_every_field() -> None:
    spec = JobInput(model="tiny", seed="a", length=2, temperature=1.0)
    assert set(spec.to_json()) == set(inspect.signature(JobInput).parameters)


def lua_final_statuses(source: str) -> set[str]:
    """Return the keys of the prelude's `FINAL` table."""
    match = re.search(r"local FINAL\s*=\s*\{([^}]*)\}", source)
    assert match is not None, "the prelude defines no FINAL table"
    entries = [entry.strip() for entry in match.group(1).split(",") if entry.strip()]
    assert all(re.fullmatch(r"\w+\s*=\s*true", entry) for entry in entries), entries
    return {entry.split("=")[0].strip() for entry in entries}


def test_the_prelude_final_table_lists_exactly_the_final_statuses() -> None:
    assert lua_final_statuses(PRELUDE_SOURCE) == {s.value for s in JobStatus if s.is_final}


def test_the_prelude_finds_keys_under_the_stores_prefix() -> None:
    match = re.search(r"local P = '([^']*)'", PRELUDE_SOURCE)
    assert match is not None and match.group(1) == keys.PREFIX


def test_read_scripts_prepends_the_prelude_and_skips_it(tmp_path: Path) -> None:
    (tmp_path / PRELUDE).write_text("-- prelude\n", encoding="utf-8")
    (tmp_path / "one.lua").write_text("return 1\n", encoding="utf-8")
    (tmp_path / "two.lua").write_text("return 2\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a script", encoding="utf-8")
    assert read_scripts(tmp_path) == {
        "one": "-- prelude\nreturn 1\n",
        "two": "-- prelude\nreturn 2\n",
    }


def test_read_scripts_without_a_prelude_returns_the_sources_unchanged(tmp_path: Path) -> None:
    (tmp_path / "one.lua").write_text("return 1\n", encoding="utf-8")
    assert read_scripts(tmp_path) == {"one": "return 1\n"}


def test_every_job_script_starts_with_the_prelude() -> None:
    scripts = read_scripts(LUA)
    assert "prelude" not in scripts
    expected = {path.stem for path in LUA.glob("*.lua")} - {Path(PRELUDE).stem}
    assert set(scripts) == expected
    for name, source in scripts.items():
        body = (LUA / f"{name}.lua").read_text(encoding="utf-8")
        assert source == PRELUDE_SOURCE + body, name


def scripts_used_by(module: object) -> set[str]:
    """Return the names looked up as `self._scripts["name"]` in a module's source."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    return {
        node.slice.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_scripts"
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    }


def test_every_script_the_job_store_uses_exists() -> None:
    used = scripts_used_by(store_module)
    assert used >= {"create", "claim", "flush", "finish", "cancel", "release"}  # found them
    assert used <= set(read_scripts(LUA))
