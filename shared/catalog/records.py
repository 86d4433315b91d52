"""What the catalog knows of a model without its weights: `ModelInfo`, stored as a Redis hash."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property
from typing import Any

from shared.engine.model import (
    Defaults,
    UnknownChars,
    char_ids,
    encode_seed,
    encode_text,
    is_reversible,
)

SHARED_OWNER = ""  # the owner of the model directory's models: every key may use them


class ModelSource(StrEnum):
    """Where a model's files are."""

    DIRECTORY = "directory"  # the model directory of each worker
    UPLOAD = "upload"  # the catalog's blob in Redis, cached on each worker's disk


@dataclass(frozen=True)
class ModelInfo:
    """A model's properties, as `/v1/models` shows them, and what identifies its files."""

    name: str
    format: str
    mode: str
    vocab: tuple[str, ...]
    layers: tuple[int, ...]
    properties: dict[str, Any]  # the ml5-style properties (`LSTMModel.properties()`)
    source: ModelSource = ModelSource.UPLOAD
    owner: str = SHARED_OWNER
    description: str = ""
    digest: str = ""  # sha256 of the uploaded archive
    size: int = 0  # bytes of the uploaded archive
    created_at: str = ""

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any], **fields: Any) -> ModelInfo:
        """Return the info of a loaded model from its `properties()`."""
        shown = {k: v for k, v in properties.items() if k != "source"}
        return cls(
            name=str(shown["name"]),
            format=str(shown["format"]),
            mode=str(shown["mode"]),
            vocab=tuple(shown["vocab"]),
            layers=tuple(int(units) for units in shown["layer_sizes"]),
            properties=shown,
            **fields,
        )

    def renamed(self, name: str, **fields: Any) -> ModelInfo:
        """Return this info under another name (and other fields)."""
        return replace(self, name=name, properties={**self.properties, "name": name}, **fields)

    @cached_property
    def char_to_id(self) -> Mapping[str, int]:
        """Map each single character of the vocabulary to its id."""
        return char_ids(self.vocab)

    @property
    def defaults(self) -> Defaults:
        """Return the generation defaults the model advertises."""
        return Defaults(**self.properties.get("defaults", {}))

    @property
    def reversible(self) -> bool:
        """Return whether every text has one id sequence (see LSTMModel.reversible)."""
        return is_reversible(self.vocab)

    def encode(self, text: str, unknown: UnknownChars = "error") -> list[int]:
        """Turn text into vocabulary ids (see LSTMModel.encode)."""
        return encode_text(self.char_to_id, text, unknown)

    def encode_seed(self, seed: str, unknown: UnknownChars = "error") -> list[int]:
        """Return the ids of a seed, the default seed if empty (see LSTMModel.encode_seed)."""
        return encode_seed(self.char_to_id, seed or self.defaults.seed, unknown)

    def to_json(self) -> dict[str, Any]:
        """Return the model as `/v1/models/{name}` shows it."""
        document = {**self.properties, "name": self.name, "origin": self.source.value}
        if self.source is ModelSource.UPLOAD:
            document |= {
                "description": self.description,
                "digest": self.digest,
                "size": self.size,
                "created_at": self.created_at,
            }
        return document

    def to_hash(self) -> dict[str, str]:
        """Return the fields of the model's Redis hash."""
        return {
            "name": self.name,
            "format": self.format,
            "mode": self.mode,
            "vocab": json.dumps(list(self.vocab), ensure_ascii=False),
            "layers": json.dumps(list(self.layers)),
            "properties": json.dumps(self.properties, ensure_ascii=False),
            "source": self.source.value,
            "owner": self.owner,
            "description": self.description,
            "digest": self.digest,
            "size": str(self.size),
            "created_at": self.created_at,
        }

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> ModelInfo:
        """Read a model's Redis hash."""
        return cls(
            name=fields["name"],
            format=fields["format"],
            mode=fields["mode"],
            vocab=tuple(json.loads(fields["vocab"])),
            layers=tuple(json.loads(fields["layers"])),
            properties=json.loads(fields["properties"]),
            source=ModelSource(fields.get("source", ModelSource.UPLOAD.value)),
            owner=fields.get("owner", SHARED_OWNER),
            description=fields.get("description", ""),
            digest=fields.get("digest", ""),
            size=int(fields.get("size") or 0),
            created_at=fields.get("created_at", ""),
        )
