"""API keys as tenants: their names, limits, weights, and the priority of a job within one key.

One place says what each key may do: the settings' defaults (`LSTMGEN_KEY_MAX_QUEUED`, ...),
overridden per key name in `LSTMGEN_KEY_LIMITS`. Keys are named in `LSTMGEN_API_KEYS` as
`name:key`; an unnamed key is called by a short hash of it, and requests without keys (no
`LSTMGEN_API_KEYS`) by `public`. Names are what `/metrics` and `/v1/usage` show: never a key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from shared.settings import Settings

PUBLIC = "public"  # the owner of requests when the API has no keys
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class Priority(StrEnum):
    """The order of one key's jobs: higher first, then older first (never across keys)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Return 0 for high, 1 for normal, 2 for low."""
        return list(Priority).index(self)


@dataclass(frozen=True)
class KeyLimits:
    """What one key may do at once (0: no limit)."""

    max_queued: int  # jobs waiting to start
    max_running_samples: int  # samples (n per job) running
    submit_rate: float  # submissions per second, sustained (a token bucket)
    submit_burst: int  # submissions in a burst above the rate
    weight: float  # its share of freed slots against other keys with work waiting

    def to_json(self) -> dict[str, Any]:
        """Return the limits as `/v1/usage` shows them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


LIMIT_NAMES = frozenset(f.name for f in fields(KeyLimits))


def split_key(entry: str) -> tuple[str | None, str]:
    """Return the name and the key of an `LSTMGEN_API_KEYS` entry (`name:key` or `key`)."""
    name, sep, key = entry.partition(":")
    if sep and key and _NAME.match(name):
        return name, key
    return None, entry


def owner_of(api_key: str | None) -> str:
    """Return the owner id of an API key (a hash, so keys are never stored)."""
    if api_key is None:
        return PUBLIC
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def key_names(settings: Settings) -> dict[str, str]:
    """Return the name of each configured key's owner id."""
    names = {}
    for entry in settings.api_keys:
        name, key = split_key(entry)
        owner = owner_of(key)
        names[owner] = name or owner[:8]
    return names or {PUBLIC: PUBLIC}


def label(settings: Settings, owner: str) -> str:
    """Return what metrics and `/v1/usage` call an owner: its key's name or a short hash."""
    return key_names(settings).get(owner, owner[:8])


def limits_for(settings: Settings, owner: str) -> KeyLimits:
    """Return the limits of an owner: the defaults, then its name's overrides."""
    base: dict[str, Any] = {
        "max_queued": settings.key_max_queued,
        "max_running_samples": settings.key_max_running_samples,
        "submit_rate": settings.key_submit_rate,
        "submit_burst": settings.key_submit_burst,
        "weight": 1.0,
    }
    base.update(settings.key_limits.get(label(settings, owner), {}))
    return KeyLimits(
        max_queued=int(base["max_queued"]),
        max_running_samples=int(base["max_running_samples"]),
        submit_rate=float(base["submit_rate"]),
        submit_burst=max(1, int(base["submit_burst"])),
        weight=float(base["weight"]),
    )
