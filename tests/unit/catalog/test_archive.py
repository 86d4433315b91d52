"""Archive checks: every hostile layout refused with its fault named, good ones unpacked."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from shared.catalog.archive import ArchiveError, ArchiveLimits, archive_members, unpack

LIMITS = ArchiveLimits(max_bytes=4 * 2**20, max_files=8, max_ratio=100.0)


def archive(members: dict[str, bytes], modes: dict[str, int] | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            handle.writestr(info, data)
    buffer.seek(0)
    return buffer


def refused(file: io.BytesIO) -> ArchiveError:
    with pytest.raises(ArchiveError) as caught:
        archive_members(file, LIMITS)
    return caught.value


def test_a_folder_zipped_with_its_top_folder_is_read_without_it() -> None:
    file = archive({"model/manifest.json": b"{}", "model/vocab.json": b"[]", "model/": b""})
    assert sorted(archive_members(file, LIMITS)) == ["manifest.json", "vocab.json"]


def test_what_archivers_add_is_ignored() -> None:
    members = {"m/a.json": b"{}", "__MACOSX/m/._a.json": b"x", "m/.DS_Store": b"x"}
    assert list(archive_members(archive(members), LIMITS)) == ["a.json"]


@pytest.mark.parametrize(
    ("members", "modes", "fault"),
    [
        ({"../x": b""}, None, "'..'"),
        ({"a/../../x": b""}, None, "'..'"),
        ({"/etc/passwd": b""}, None, "absolute"),
        ({"C:/x": b""}, None, "absolute"),
        ({"a\\..\\x": b""}, None, "backslash"),
        ({"link": b"/etc/passwd"}, {"link": stat.S_IFLNK | 0o777}, "symbolic link"),
        ({"fifo": b""}, {"fifo": stat.S_IFIFO | 0o644}, "not a regular file"),
        ({f"f{i}": b"" for i in range(9)}, None, "9 members, more than 8"),
        ({}, None, "no files"),
    ],
)
def test_hostile_names_kinds_and_counts_are_refused(
    members: dict[str, bytes], modes: dict[str, int] | None, fault: str
) -> None:
    error = refused(archive(members, modes))
    assert fault in str(error) and error.status == 422


def test_duplicate_members_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle, pytest.warns(UserWarning):
        handle.writestr("a", b"1")
        handle.writestr("a", b"2")
    assert "more than once" in str(refused(buffer))


def test_a_zip_bomb_is_refused_by_its_ratio_and_a_large_one_by_its_size() -> None:
    assert "zip bomb" in str(refused(archive({"zeros": bytes(2 * 2**20)})))
    big = refused(archive({f"f{i}": bytes(2**20) for i in range(5)}))
    assert big.status == 413 and "unpacks to" in str(big)


def test_an_end_record_announcing_many_members_is_refused_before_parsing() -> None:
    file = archive({"a": b""})
    data = bytearray(file.getvalue())
    where = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, where + 8, 65_535, 65_535)
    assert "65535 members" in str(refused(io.BytesIO(bytes(data))))


def test_bytes_that_are_no_zip_are_refused() -> None:
    assert "not a zip" in str(refused(io.BytesIO(b"hello")))
    assert "not a zip" in str(refused(io.BytesIO(b"PK\x05\x06" + bytes(10))))


def test_unpack_writes_the_files_under_the_folder(tmp_path: Path) -> None:
    file = archive({"m/vocab.json": b"[]", "m/sub/w.bin": b"\x00" * 8})
    assert sorted(unpack(file, tmp_path, LIMITS)) == ["sub/w.bin", "vocab.json"]
    assert (tmp_path / "sub" / "w.bin").read_bytes() == b"\x00" * 8
