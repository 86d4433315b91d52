"""Load a folder of Redis Lua scripts, each registered once per client under its file name.

A folder's `prelude.lua`, if any, starts every other script of that folder: its helpers are
local functions, so each script stays one self-contained EVAL.
"""

from __future__ import annotations

from pathlib import Path

import redis
from redis.commands.core import Script

PRELUDE = "prelude.lua"


def read_scripts(folder: Path) -> dict[str, str]:
    """Return the source of each script in `folder` by name (`claim.lua` is `claim`)."""
    prelude_path = folder / PRELUDE
    prelude = prelude_path.read_text(encoding="utf-8") if prelude_path.exists() else ""
    return {
        path.stem: prelude + path.read_text(encoding="utf-8")
        for path in sorted(folder.glob("*.lua"))
        if path.name != PRELUDE
    }


def load_scripts(client: redis.Redis, folder: Path) -> dict[str, Script]:
    """Register every script of `folder` on the client."""
    return {name: client.register_script(source) for name, source in read_scripts(folder).items()}
