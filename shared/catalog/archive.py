"""Checking and unpacking uploaded model archives (zip), refusing every hostile layout.

A model archive is a zip of one model folder, with or without the folder itself as its top
level. Before anything is unpacked, the archive's own records are checked: how many members it
has (read from its end record, so a forged directory of millions of entries is refused before
it is parsed), their names (no absolute paths, no `..`, no backslashes, no duplicates), their
kinds (no symlinks or devices, nothing encrypted) and their sizes (the total unpacked size and
each member's unpacked/packed ratio). Unpacking then reads no more than each member declares.
"""

from __future__ import annotations

import re
import shutil
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from shared.settings import Settings

END_RECORD = b"PK\x05\x06"
END_RECORD_SIZE = 22
RATIO_FLOOR_BYTES = 2**20  # members smaller than this may compress as well as they like
_DRIVE = re.compile(r"^[A-Za-z]:")
_IGNORED_TOP = frozenset({"__MACOSX"})


class ArchiveError(ValueError):
    """An archive that is refused: `status` is the HTTP status, the message names the fault."""

    def __init__(self, message: str, status: int = 422) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class ArchiveLimits:
    """What an uploaded archive may hold."""

    max_bytes: int  # unpacked size of all members together
    max_files: int  # members (files and folders)
    max_ratio: float  # unpacked / packed size of a member larger than RATIO_FLOOR_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        """Return the limits the settings give uploads."""
        return cls(settings.max_model_bytes, settings.max_model_files, settings.max_model_ratio)


def archive_members(file: IO[bytes], limits: ArchiveLimits) -> dict[str, zipfile.ZipInfo]:
    """Return the files of a model archive by their path in the model folder, or raise."""
    _check_entry_count(file, limits)
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ArchiveError(f"not a zip archive ({error})") from None
    with archive:
        return _members(archive.infolist(), limits)


def unpack(file: IO[bytes], folder: Path, limits: ArchiveLimits) -> list[str]:
    """Check a model archive and unpack its files into `folder`; return their paths."""
    members = archive_members(file, limits)
    file.seek(0)
    with zipfile.ZipFile(file) as archive:
        for path, info in members.items():
            target = folder.joinpath(*PurePosixPath(path).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 2**20)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                raise ArchiveError(f"member {info.filename!r} is corrupt ({error})") from None
    return list(members)


def _check_entry_count(file: IO[bytes], limits: ArchiveLimits) -> None:
    """Refuse an archive whose end record announces more members than allowed."""
    file.seek(0, 2)
    size = file.tell()
    tail_size = min(size, END_RECORD_SIZE + 65_535)
    file.seek(size - tail_size)
    tail = file.read(tail_size)
    file.seek(0)
    where = tail.rfind(END_RECORD)
    if where < 0 or where + END_RECORD_SIZE > len(tail):
        raise ArchiveError("not a zip archive (no end of central directory record)")
    (entries,) = struct.unpack_from("<H", tail, where + 10)
    if entries > limits.max_files:  # 0xFFFF (zip64) is more than any allowed count
        raise ArchiveError(f"the archive has {entries} members, more than {limits.max_files}")


def _members(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> dict[str, zipfile.ZipInfo]:
    if len(infos) > limits.max_files:
        raise ArchiveError(f"the archive has {len(infos)} members, more than {limits.max_files}")
    files: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        path = _member_path(info)
        if path is None:
            continue
        if path in files:
            raise ArchiveError(f"member {info.filename!r} appears more than once")
        files[path] = info
    if not files:
        raise ArchiveError("the archive holds no files")
    _check_sizes(list(files.values()), limits)
    return _strip_top_folder(files)


def _member_path(info: zipfile.ZipInfo) -> str | None:
    """Return a member's checked relative path, or None for what a model folder ignores."""
    name = info.filename
    if "\\" in name or "\x00" in name:
        raise ArchiveError(f"member {name!r}: backslashes and NUL are not allowed in names")
    if name.startswith("/") or _DRIVE.match(name):
        raise ArchiveError(f"member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member {name!r} points outside the archive ('..')")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ArchiveError(f"member {name!r} is a symbolic link")
    if info.flag_bits & 0x1:
        raise ArchiveError(f"member {name!r} is encrypted")
    if info.is_dir() or not parts:
        return None
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: the archiver wrote no file type
        raise ArchiveError(f"member {name!r} is not a regular file")
    if parts[0] in _IGNORED_TOP or parts[-1].startswith("._") or parts[-1] == ".DS_Store":
        return None  # what archivers of some systems add
    if len(name) > 255:
        raise ArchiveError(f"member {name[:40]!r}... has a name longer than 255 characters")
    return "/".join(parts)


def _check_sizes(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    total = sum(info.file_size for info in infos)
    if total > limits.max_bytes:
        raise ArchiveError(
            f"the archive unpacks to {total} bytes, more than the {limits.max_bytes}-byte limit",
            413,
        )
    for info in infos:
        packed = max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * packed:
            raise ArchiveError(
                f"member {info.filename!r} unpacks {info.file_size // packed}-fold "
                f"({packed} to {info.file_size} bytes), more than {limits.max_ratio:g}-fold: "
                "a zip bomb?"
            )


def _strip_top_folder(files: dict[str, zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """Drop the one folder every file is in (a zip of the model folder itself)."""
    while True:
        tops = {path.split("/", 1)[0] for path in files}
        if len(tops) != 1 or any("/" not in path for path in files):
            return files
        files = {path.split("/", 1)[1]: info for path, info in files.items()}
