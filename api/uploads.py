"""Accepting an uploaded model: read the form, check the archive, have a worker load it,
publish it. A refused upload leaves nothing behind: no file, no Redis key."""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from flask import Request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from api.problems import FieldError, Problem, invalid
from api.services import Services
from shared.catalog.archive import ArchiveError, ArchiveLimits, archive_members
from shared.catalog.catalog import PublishOutcome, Staged
from shared.catalog.records import ModelInfo, ModelSource
from shared.celery_app import request_check
from shared.engine.registry import NAME_PATTERN
from shared.jobs.serialize import isoformat

MAX_DESCRIPTION_CHARS = 1000
FORM_OVERHEAD_BYTES = 2**20  # room for the other form fields and the multipart framing
ARCHIVE_SUFFIXES = (".zip",)
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Upload:
    """The fields of an upload form."""

    name: str
    description: str
    file: FileStorage
    vocab: FileStorage | None


def read_form(request: Request, services: Services, name: str | None) -> Upload:
    """Return the upload form's fields (`name` from the path for PUT), or a 4xx."""
    limit = services.settings.max_model_bytes
    request.max_content_length = limit + FORM_OVERHEAD_BYTES
    if request.mimetype != "multipart/form-data":
        detail = "send the model as multipart/form-data with a `name` and a `file`"
        raise Problem(415, "Unsupported media type", detail, "unsupported-media-type")
    try:
        form, files = request.form, request.files
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    errors: list[FieldError] = []
    name = name if name is not None else form.get("name", "")
    if not NAME_PATTERN.match(name):
        message = "must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit"
        errors.append(FieldError("name", message))
    description = form.get("description", "")
    if len(description) > MAX_DESCRIPTION_CHARS:
        errors.append(FieldError("description", f"must be at most {MAX_DESCRIPTION_CHARS} chars"))
    file = files.get("file")
    if file is None or not file.filename:
        errors.append(FieldError("file", "send the model as a file part named `file`"))
    if errors:
        raise invalid(errors)
    assert file is not None
    return Upload(name, description, file, files.get("vocab"))


def _too_large(limit: int) -> Problem:
    return _too_large_detail(f"the model is larger than the {limit}-byte limit")


@contextlib.contextmanager
def package(upload: Upload) -> Iterator[IO[bytes]]:
    """Yield the upload as a model archive: the zip itself, or a zip made of a `.keras` or
    `.h5` file and its vocabulary."""
    filename = _basename(upload.file.filename or "")
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix in ARCHIVE_SUFFIXES:
        if upload.vocab is not None:
            raise invalid([FieldError("vocab", "belongs in the archive; send it only beside a "
                                      ".keras or .h5 file")])  # fmt: skip
        yield upload.file.stream
        return
    if suffix not in MODEL_FILE_SUFFIXES:
        message = "must be a .zip of a model folder, or a .keras or .h5 file"
        raise invalid([FieldError("file", f"{message}, not {filename!r}")])
    if upload.vocab is None:
        message = "a .keras or .h5 file needs its vocabulary: send it as the part `vocab`"
        raise invalid([FieldError("vocab", message)])
    vocab_name = _basename(upload.vocab.filename or "") or "vocab.json"
    if not _SAFE_FILENAME.match(vocab_name) or vocab_name.lower().endswith(MODEL_FILE_SUFFIXES):
        vocab_name = "vocab.json"
    with tempfile.TemporaryFile(prefix="lstmgen-upload-") as handle:
        _zip_parts(
            handle, [(f"model{suffix}", upload.file.stream), (vocab_name, upload.vocab.stream)]
        )
        yield handle


def _zip_parts(handle: IO[bytes], parts: list[tuple[str, IO[bytes]]]) -> None:
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for name, stream in parts:
            with archive.open(name, "w", force_zip64=True) as member:
                while chunk := stream.read(2**20):
                    member.write(chunk)
    handle.seek(0)


def _basename(filename: str) -> str:
    return PurePosixPath(filename.replace("\\", "/")).name


def receive(
    services: Services, owner: str, upload: Upload, *, replace: bool
) -> tuple[ModelInfo, bool]:
    """Check, stage, have a worker load, and publish an upload; return it and whether it is
    new (else it replaced the owner's model of that name)."""
    settings = services.settings
    _check_name(services, owner, upload.name, replace=replace)
    limits = ArchiveLimits.from_settings(settings)
    with package(upload) as archive:
        try:
            archive_members(archive, limits)
            staged = services.catalog.stage(
                archive, settings.max_model_bytes, 2 * settings.model_check_timeout_s
            )
        except ArchiveError as error:
            raise _refused(error) from None
    try:
        info = _checked(services, staged)
        info = info.renamed(
            upload.name,
            owner=owner,
            description=upload.description,
            digest=staged.digest,
            size=staged.size,
            created_at=isoformat(time.time()) or "",
        )
        outcome = services.catalog.publish(info, staged, replace=replace)
    except BaseException:
        services.catalog.discard(staged)
        raise
    if outcome in (PublishOutcome.EXISTS, PublishOutcome.TAKEN):
        raise _taken(upload.name, "the name is in use")
    if outcome is PublishOutcome.EXPIRED:
        raise _unavailable("the upload expired before it could be published; send it again")
    _confirm_replicated(services, info.name)
    return info, outcome is PublishOutcome.CREATED


def _confirm_replicated(services: Services, name: str) -> None:
    """Answer only once `redis_min_replicas` replicas hold the model (as for a job)."""
    short = services.replicas_short()
    if short is not None:
        held, wanted = short
        raise _unavailable(
            f"model {name!r} is stored, but {held} of the {wanted} replicas it must reach "
            "confirmed it in time; PUT it again to be sure it survives a failover"
        )


def _check_name(services: Services, owner: str, name: str, *, replace: bool) -> None:
    """Refuse a name that is another's, a model directory's, or the owner's (unless replacing)."""
    if name in services.model_names():
        raise _taken(name, "a model of the model directory has this name")
    existing = services.catalog.get(name)
    if existing is None:
        return
    if existing.owner != owner or existing.source is not ModelSource.UPLOAD:
        raise _taken(name, "the name is in use")
    if not replace:
        raise _taken(name, "you have a model of this name; PUT /v1/models/{name} replaces it")


def _checked(services: Services, staged: Staged) -> ModelInfo:
    """Have a worker load the staged upload; return its info, or the 4xx/503 it earns."""
    request_check(services.celery, staged.token)
    verdict = services.catalog.await_answer(staged.token, services.settings.model_check_timeout_s)
    if verdict is None:
        raise _unavailable("no worker checked the model in time; retry when workers are up")
    if not verdict.get("ok"):
        raise _refused(ArchiveError(str(verdict.get("error")), int(verdict.get("status", 422))))
    return ModelInfo.from_hash(verdict["info"])


def _refused(error: ArchiveError) -> Problem:
    if error.status == 413:
        return _too_large_detail(str(error))
    return Problem(
        422, "Invalid model", f"file: {error}", "invalid-model", [FieldError("file", str(error))]
    )


def _too_large_detail(message: str) -> Problem:
    errors = [FieldError("file", message)]
    return Problem(413, "Model too large", f"file: {message}", "model-too-large", errors)


def _taken(name: str, why: str) -> Problem:
    detail = f"model name {name!r} is taken: {why}"
    return Problem(409, "Conflict", detail, "model-name-taken", [FieldError("name", detail)])


def _unavailable(detail: str) -> Problem:
    headers = {"Retry-After": "5"}
    return Problem(
        503, "Model check unavailable", detail, "model-check-unavailable", headers=headers
    )
