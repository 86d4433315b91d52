"""Reading the files a model folder is made of, with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.engine.model import ModelLoadError


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """Return the JSON object in `path` (`what` names the file in errors)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(path, f"{what} not found") from None
    except (OSError, ValueError) as error:
        raise ModelLoadError(path, f"not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ModelLoadError(path, f"{what} is not a JSON object")
    return document
