"""Writing a bundle to disk, the only code that does: ``materialize`` writes one into an empty
directory (unpacking archives without trusting them) and makes it read-only; ``remove_tree``
undoes it."""

from __future__ import annotations

import gzip
import io
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from executor.bundle.rules import (
    _ARCHIVE_ERRORS,
    _CHUNK,
    _MAX_PATH_BYTES,
    _TAR_OVERHEAD_PER_ENTRY,
    _TAR_TRAILER,
    ASSETS_PATH,
    MAX_FILES,
    _archive_format,
    _check_file,
    _invalid,
    _link_problem,
    _name_problem,
    _Names,
    _too_large,
)
from schemas.bundles import Bundle, BundleFile

# ---- writing ------------------------------------------------------------------------------------


class _Writer:
    """Creates entries under ``dest`` within a byte and entry budget, never through a symlink."""

    def __init__(self, dest: Path, max_bytes: int, max_entries: int) -> None:
        self.dest = dest
        self.bytes_left = max_bytes
        self.entries_left = max_entries
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.links: list[tuple[Path, str, str]] = []

    def _take_entry(self, where: str) -> None:
        self.entries_left -= 1
        if self.entries_left < 0:
            raise _too_large(where, f"the bundle has more than {self.max_entries} entries")

    def _take_bytes(self, count: int, where: str) -> None:
        self.bytes_left -= count
        if self.bytes_left < 0:
            raise _too_large(where, f"the bundle unpacks to more than {self.max_bytes} bytes")

    def stream_allowance(self) -> int:
        return self.bytes_left + _TAR_OVERHEAD_PER_ENTRY * (self.entries_left + 1) + _TAR_TRAILER

    def directory(self, rel: str, where: str) -> Path:
        path = self.dest
        for segment in rel.split("/") if rel else []:
            path = path / segment
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                self._take_entry(where)
                os.mkdir(path)
                continue
            if not stat.S_ISDIR(mode):
                inside = path.relative_to(self.dest).as_posix()
                raise _invalid(where, f"{inside!r} is a file or link, not a directory")
        return path

    def _new_path(self, rel: str, where: str) -> Path:
        self._take_entry(where)
        return self.directory(posixpath.dirname(rel), where) / posixpath.basename(rel)

    def file(self, rel: str, chunks: Iterator[bytes], where: str) -> None:
        path = self._new_path(rel, where)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            raise _invalid(where, f"{rel!r} is written twice") from None
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                self._take_bytes(len(chunk), where)
                out.write(chunk)

    def link(self, rel: str, raw_target: bytes, where: str) -> None:
        problem = _link_problem(rel, raw_target)
        if problem:
            raise _invalid(where, f"{rel!r}: {problem}")
        path = self._new_path(rel, where)
        try:
            os.symlink(raw_target.decode(), path)
        except FileExistsError:
            raise _invalid(where, f"{rel!r} is written twice") from None
        self.links.append((path, rel, where))

    def check_links(self) -> None:
        root = os.path.realpath(self.dest)
        for path, rel, where in self.links:
            real = os.path.realpath(path)
            if real != root and not real.startswith(root + os.sep):
                raise _invalid(where, f"link {rel!r} resolves outside the bundle")


def _chunks(reader: IO[bytes]) -> Iterator[bytes]:
    while chunk := reader.read(_CHUNK):
        yield chunk


def _entry_path(base: str, name: str, where: str) -> str | None:
    """The bundle-relative path of an archive entry, or None for the archive's own root."""
    if name.startswith("/"):
        raise _invalid(where, f"archive entry {name!r} is an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _invalid(where, f"archive entry {name!r} contains '..'")
    if not parts:
        return None
    rel = "/".join([base, *parts] if base else parts)
    problem = _name_problem(rel)
    if problem:
        raise _invalid(where, f"archive entry {name!r} {problem}")
    return rel


def _unpack_zip(writer: _Writer, data: bytes, base: str, where: str) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            rel = _entry_path(base, info.filename, where)
            if rel is None:
                continue
            # Only zips made on unix carry a file type in the high bits of external_attr.
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            if info.is_dir() or stat.S_ISDIR(mode):
                writer.directory(rel, where)
            elif stat.S_ISLNK(mode):
                with archive.open(info) as reader:
                    writer.link(rel, reader.read(_MAX_PATH_BYTES + 1), where)
            elif stat.S_IFMT(mode) in (0, stat.S_IFREG):
                with archive.open(info) as reader:
                    writer.file(rel, _chunks(reader), where)
            else:
                raise _invalid(where, f"archive entry {info.filename!r} is a special file")


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _CappedReader(io.BufferedIOBase):
    """Stops a decompressed stream at a byte limit, so tar headers cannot balloon in memory."""

    def __init__(self, raw: _Readable, limit: int, where: str) -> None:
        super().__init__()
        self._raw = raw
        self._left = limit
        self._limit = limit
        self._where = where

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        data = self._raw.read(want)
        self._left -= len(data)
        if self._left < 0:
            raise _too_large(self._where, f"the archive's tar stream exceeds {self._limit} bytes")
        return data


def _unpack_tar(writer: _Writer, data: bytes, base: str, where: str, *, gz: bool) -> None:
    raw: _Readable = gzip.GzipFile(fileobj=io.BytesIO(data)) if gz else io.BytesIO(data)
    stream = _CappedReader(raw, writer.stream_allowance(), where)
    # Stream mode reads each header in order and never seeks, so nothing is read twice.
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            rel = _entry_path(base, member.name, where)
            if rel is None:
                continue
            if member.isdir():
                writer.directory(rel, where)
            elif member.issym():
                writer.link(rel, member.linkname.encode("utf-8", "surrogateescape"), where)
            elif member.isreg():
                reader = archive.extractfile(member)
                if reader is None:
                    raise _invalid(where, f"archive entry {member.name!r} cannot be read")
                writer.file(rel, _chunks(reader), where)
            elif member.islnk():
                raise _invalid(where, f"archive entry {member.name!r} is a hard link")
            else:
                raise _invalid(where, f"archive entry {member.name!r} is a special file")


def _unpack(writer: _Writer, file: BundleFile, where: str) -> None:
    base = posixpath.dirname(file.name)
    kind = _archive_format(file.data)
    try:
        if kind == "zip":
            _unpack_zip(writer, file.data, base, where)
        elif kind is not None:
            _unpack_tar(writer, file.data, base, where, gz=kind == "tar.gz")
        else:
            raise _invalid(where, "not a zip or tar.gz archive")
    except _ARCHIVE_ERRORS as exc:
        raise _invalid(where, f"the archive is corrupt ({exc})") from None


def _raise(exc: OSError) -> None:
    raise exc


def _seal(dest: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(dest, onerror=_raise):
        for name in filenames:
            path = os.path.join(dirpath, name)
            # Linux cannot chmod a symlink itself, and its mode is never consulted anyway.
            if not os.path.islink(path):
                os.chmod(path, 0o444)
        os.chmod(dirpath, 0o555)


def materialize(
    bundle: Bundle, dest: Path, *, max_total_bytes: int, max_files: int = MAX_FILES
) -> None:
    """Write ``bundle`` into the empty directory ``dest`` and make the whole tree read-only.

    On failure ``dest`` may hold partial (still writable) content; the caller removes it.
    """
    names = _Names()
    for index, file in enumerate(bundle.files):
        _check_file(file, index, names, ASSETS_PATH)
    writer = _Writer(dest, max_total_bytes, max_files)
    for index, file in enumerate(bundle.files):
        where = f"{ASSETS_PATH}/{index}/asset_value"
        if file.kind == "archive":
            _unpack(writer, file, where)
        elif file.kind == "link":
            writer.link(file.name, file.data, where)
        else:
            writer.file(file.name, iter([file.data]), where)
    writer.check_links()
    _seal(dest)


def remove_tree(path: Path) -> None:
    """Remove a (possibly read-only) workspace tree; a missing path is not an error."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    for dirpath, _dirnames, _filenames in os.walk(path):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(path)
