"""`ModelCatalog`: models' info and uploaded models' archives in the service's Redis."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import redis

from shared.catalog.archive import ArchiveError
from shared.catalog.keys import INDEX_KEY, blob_key, model_key, reply_key, staging_key
from shared.catalog.records import SHARED_OWNER, ModelInfo, ModelSource
from shared.jobs.scripts import load_scripts
from shared.redis_connection import connect

LUA = Path(__file__).parent / "lua"
CHUNK_BYTES = 2**20  # archives move to and from Redis in pieces this large
BLOCK_S = 5.0  # the longest one blocking read of a verdict (the socket timeout is longer)


class PublishOutcome(StrEnum):
    """What publishing an uploaded model did."""

    CREATED = "created"
    REPLACED = "replaced"
    EXISTS = "exists"  # a create on a name the owner already uses
    TAKEN = "taken"  # the name is another owner's, or a model directory's
    EXPIRED = "expired"  # the staged archive expired before it was published


@dataclass(frozen=True)
class Staged:
    """An uploaded archive in Redis, waiting for its check: its token, digest and size."""

    token: str
    digest: str
    size: int


class ModelCatalog:
    """Every model's `ModelInfo` in Redis, and the archives of uploaded models by digest.

    `client` decodes responses (info hashes); `raw` does not (archive bytes).
    """

    def __init__(self, client: redis.Redis, raw: redis.Redis) -> None:
        self.client = client
        self.raw = raw
        self._scripts = load_scripts(client, LUA)

    @classmethod
    def from_url(cls, url: str, sentinel_master: str = "") -> ModelCatalog:
        """Connect to the Redis at `url` (a Sentinel URL: the primary named `sentinel_master`)."""
        return cls(
            connect(url, sentinel_master),
            connect(url, sentinel_master, decode_responses=False),
        )

    def get(self, name: str) -> ModelInfo | None:
        """Return the info of a model, or None."""
        fields: dict[str, str] = self.client.hgetall(model_key(name))  # type: ignore[assignment]
        return ModelInfo.from_hash(fields) if fields else None

    def uploaded(self, name: str, owner: str) -> ModelInfo | None:
        """Return an uploaded model if `owner` may use it (its own), else None."""
        info = self.get(name)
        if info is None or info.source is not ModelSource.UPLOAD or info.owner != owner:
            return None
        return info

    def uploads_of(self, owner: str) -> list[ModelInfo]:
        """Return the models `owner` uploaded, by name."""
        names = sorted(str(name) for name in self.client.smembers(INDEX_KEY))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(model_key(name))
        found = [ModelInfo.from_hash(fields) for fields in pipe.execute() if fields]
        return [i for i in found if i.source is ModelSource.UPLOAD and i.owner == owner]

    def stage(self, file: IO[bytes], max_bytes: int, ttl_s: float) -> Staged:
        """Copy an archive into Redis under a new token (expiring after `ttl_s`)."""
        token = uuid.uuid4().hex
        key, digest, size = staging_key(token), hashlib.sha256(), 0
        file.seek(0)
        try:
            while chunk := file.read(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise ArchiveError(f"the file is larger than the {max_bytes}-byte limit", 413)
                digest.update(chunk)
                pipe = self.raw.pipeline(transaction=False)
                pipe.append(key, chunk)
                pipe.pexpire(key, int(ttl_s * 1000))
                pipe.execute()
        except BaseException:
            self.raw.delete(key)
            raise
        return Staged(token, digest.hexdigest(), size)

    def discard(self, staged: Staged) -> None:
        """Delete an upload that will not be published, and any answer about it."""
        self.raw.delete(staging_key(staged.token), reply_key(staged.token))

    def read_staged(self, token: str, sink: IO[bytes]) -> bool:
        """Copy a staged archive into `sink`; False if it is gone."""
        return self._read(staging_key(token), sink)

    def read_blob(self, digest: str, sink: IO[bytes]) -> bool:
        """Copy an uploaded model's archive into `sink`; False if it is gone."""
        return self._read(blob_key(digest), sink)

    def _read(self, key: str, sink: IO[bytes]) -> bool:
        size = int(self.raw.strlen(key))
        offset = 0
        while offset < size:
            chunk: bytes = self.raw.getrange(key, offset, offset + CHUNK_BYTES - 1)  # type: ignore[assignment]
            if not chunk:
                return False
            sink.write(chunk)
            offset += len(chunk)
        return size > 0

    def answer(self, token: str, verdict: dict[str, Any], ttl_s: float) -> None:
        """Tell the API that waits on a staged archive what its check found."""
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(reply_key(token), json.dumps(verdict, ensure_ascii=False))
        pipe.pexpire(reply_key(token), int(ttl_s * 1000))
        pipe.execute()

    def await_answer(self, token: str, timeout_s: float) -> dict[str, Any] | None:
        """Wait up to `timeout_s` for the check of a staged archive; None if none came."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            # In short waits: a blocking call must end well within the socket's timeout.
            reply: Any = self.client.blpop([reply_key(token)], timeout=min(left, BLOCK_S))
            if reply is not None:
                verdict: dict[str, Any] = json.loads(reply[1])
                return verdict
        return None

    def publish(self, info: ModelInfo, staged: Staged, *, replace: bool) -> PublishOutcome:
        """Make a checked upload a model under `info.name` (the staged archive becomes its
        blob), unless the name is taken; `replace` lets the owner's model of that name go."""
        keys = [model_key(info.name), INDEX_KEY, staging_key(staged.token)]
        args = [info.name, info.owner, "replace" if replace else "create", staged.digest]
        for name, value in info.to_hash().items():
            args += [name, value]
        return PublishOutcome(str(self._scripts["publish"](keys=keys, args=args)))

    def publish_directory(self, info: ModelInfo) -> bool:
        """Record the info of a model directory's model; False if an upload has its name."""
        info = replace(info, source=ModelSource.DIRECTORY, owner=SHARED_OWNER)
        args: list[str] = []
        for name, value in info.to_hash().items():
            args += [name, value]
        keys = [model_key(info.name), INDEX_KEY]
        return str(self._scripts["directory"](keys=keys, args=args)) == "published"

    def delete(self, name: str, owner: str) -> bool:
        """Delete an owner's uploaded model (its blob too, if no other model uses it)."""
        keys = [model_key(name), INDEX_KEY]
        return str(self._scripts["delete"](keys=keys, args=[name, owner])) == "deleted"

    def close(self) -> None:
        """Close both connections."""
        self.client.close()
        self.raw.close()
