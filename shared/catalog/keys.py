"""Redis keys of the model catalog, under the job store's prefix.

- `model:{name}`          hash: a model's `ModelInfo` (uploaded, or published by a worker)
- `models`                set: the names that have a `model:` hash
- `blob:{sha256}`         string: an uploaded model's archive, by the digest of its bytes
- `blob:{sha256}:refs`    set: the names of the models whose files the blob is (deleted with
                          the last of them)
- `upload:{token}`        string: an upload's archive while a worker checks it (expires)
- `upload:{token}:reply`  list: the worker's verdict on it (expires)

lua/prelude.lua spells the `blob:` keys out again, for the blob of a model being replaced.
"""

from __future__ import annotations

from shared.jobs.keys import PREFIX

INDEX_KEY = PREFIX + "models"


def model_key(name: str) -> str:
    """Return the key of a model's info hash."""
    return f"{PREFIX}model:{name}"


def blob_key(digest: str) -> str:
    """Return the key of an uploaded archive, by its sha256."""
    return f"{PREFIX}blob:{digest}"


def refs_key(digest: str) -> str:
    """Return the key of the set of model names that use a blob."""
    return f"{PREFIX}blob:{digest}:refs"


def staging_key(token: str) -> str:
    """Return the key of an upload being checked."""
    return f"{PREFIX}upload:{token}"


def reply_key(token: str) -> str:
    """Return the key where a worker answers the check of an upload."""
    return f"{PREFIX}upload:{token}:reply"
