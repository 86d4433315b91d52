"""Registering a model folder in one call, for processes that have the loaders (training).

`publish_folder(catalog, name, folder, owner=..., description=...)` zips the folder, loads it
as a worker's check would, stores it and its info under `name`: the model is then served by
every running worker, as an upload would be.
"""

from __future__ import annotations

import tempfile
import time
import zipfile
from pathlib import Path

from shared.catalog.archive import ArchiveError, ArchiveLimits
from shared.catalog.catalog import ModelCatalog, PublishOutcome
from shared.catalog.inspect import inspect_archive
from shared.catalog.records import ModelInfo
from shared.jobs.serialize import isoformat

STAGE_TTL_S = 300.0  # the staged archive expires if this process dies before publishing


def publish_folder(
    catalog: ModelCatalog,
    name: str,
    folder: Path,
    *,
    owner: str,
    description: str = "",
    replace: bool = False,
    limits: ArchiveLimits,
    max_vocab: int,
) -> tuple[ModelInfo, PublishOutcome]:
    """Check a model folder by loading it, and publish it as `owner`'s model `name`."""
    with tempfile.TemporaryFile(prefix="lstmgen-publish-") as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    archive.write(path, path.name)
        handle.seek(0)
        checked = inspect_archive(handle, limits, max_vocab)
        staged = catalog.stage(handle, limits.max_bytes, STAGE_TTL_S)
    info = checked.renamed(
        name,
        owner=owner,
        description=description,
        digest=staged.digest,
        size=staged.size,
        created_at=isoformat(time.time()) or "",
    )
    try:
        outcome = catalog.publish(info, staged, replace=replace)
    except BaseException:
        catalog.discard(staged)
        raise
    if outcome not in (PublishOutcome.CREATED, PublishOutcome.REPLACED):
        raise ArchiveError(f"model name {name!r} is in use ({outcome.value})", 409)
    return info, outcome
