"""Checking an upload for the API: load it as the engine will, answer what was found."""

from __future__ import annotations

import logging
import tempfile
from typing import Any

from shared.catalog.archive import ArchiveError, ArchiveLimits
from shared.catalog.catalog import ModelCatalog
from shared.catalog.inspect import inspect_archive

log = logging.getLogger(__name__)


def check_upload(
    catalog: ModelCatalog, token: str, limits: ArchiveLimits, max_vocab: int, ttl_s: float
) -> None:
    """Load the staged upload `token` and answer its info, or the fault that refuses it."""
    with tempfile.TemporaryFile(prefix="lstmgen-upload-") as handle:
        if not catalog.read_staged(token, handle):
            log.info("upload %s is gone before its check (the API gave up on it)", token)
            return
        handle.seek(0)
        verdict: dict[str, Any]
        try:
            info = inspect_archive(handle, limits, max_vocab)
            verdict = {"ok": True, "info": info.to_hash()}
        except ArchiveError as error:
            verdict = {"ok": False, "status": error.status, "error": str(error)}
    catalog.answer(token, verdict, ttl_s)
