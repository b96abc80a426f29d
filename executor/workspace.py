"""Workspaces: the only code that turns uploaded assets into files on disk and sets their modes.

``decode_assets`` checks a request's assets and turns them into a ``Bundle``; ``materialize``
writes a bundle into an empty directory (unpacking archives without trusting them) and makes it
read-only; ``WorkspaceCache`` keeps one materialised copy per bundle digest on a worker.
"""

from __future__ import annotations

import base64
import errno
import gzip
import io
import keyword
import os
import posixpath
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from schemas.bundles import Bundle, BundleFile, FileKind
from schemas.errors import InvalidRequest, PayloadTooLarge, detail
from schemas.functions import Asset

ASSETS_PATH = "/compute_asset/assets"
HANDLER_PATH = "/compute_asset/handler"
RUNTIME_PATH = "/compute_asset/runtime"

_MAX_SEGMENT_BYTES = 255
_MAX_PATH_BYTES = 1024
_CHUNK = 64 * 1024
# Tar headers, long-name records and padding cost up to a few blocks per entry on top of the data.
_TAR_OVERHEAD_PER_ENTRY = 4096
_TAR_TRAILER = 10240
MAX_FILES = 10_000  # entries of one bundle, archives' contents included
_DIGEST = re.compile(r"[0-9a-f]{64}")
_JS_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_EXTENSIONS = {"nodejs": ".js", "python": ".py"}
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    gzip.BadGzipFile,
    zlib.error,
    EOFError,
    RuntimeError,  # zipfile: encrypted entry
    NotImplementedError,  # zipfile: unsupported compression method
)


def _invalid(path: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {reason}", [detail(path, reason)])


def _too_large(path: str, reason: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{path}: {reason}", [detail(path, reason)])


# ---- names and link targets -------------------------------------------------------------------


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe relative path inside a bundle, or None."""
    if not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "must be a relative path"
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if size > _MAX_PATH_BYTES:
        return f"is longer than {_MAX_PATH_BYTES} bytes"
    for segment in name.split("/"):
        if segment == "":
            return "contains an empty path segment"
        if segment in (".", ".."):
            return f"contains a '{segment}' path segment"
        if len(segment.encode()) > _MAX_SEGMENT_BYTES:
            return f"has a path segment longer than {_MAX_SEGMENT_BYTES} bytes"
    return None


def _link_problem(name: str, raw_target: bytes) -> str | None:
    """Why a link at ``name`` to ``raw_target`` would not stay inside the bundle, or None.

    This is the lexical check; ``materialize`` also resolves every link on disk, which catches
    chains of links that only escape once followed.
    """
    try:
        target = raw_target.decode()
    except UnicodeDecodeError:
        return "link target is not valid UTF-8"
    if not target:
        return "link target is empty"
    if "\x00" in target:
        return "link target contains a NUL byte"
    if target.startswith("/"):
        return f"link target {target!r} is absolute"
    if len(raw_target) > _MAX_PATH_BYTES:
        return f"link target is longer than {_MAX_PATH_BYTES} bytes"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        return f"link target {target!r} points outside the bundle"
    return None


def _archive_format(data: bytes) -> str | None:
    if data.startswith(b"PK\x03\x04"):
        return "zip"
    if data.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if data[257:262] == b"ustar":
        return "tar"
    return None


class _Names:
    """The paths a bundle claims so far: no duplicates, and no file that is also a directory."""

    def __init__(self) -> None:
        self.files: dict[str, int] = {}
        self.dirs: dict[str, int] = {}

    def claim(self, name: str, index: int) -> str | None:
        if name in self.files:
            return f"duplicates asset {self.files[name]}"
        if name in self.dirs:
            return f"is also a directory of asset {self.dirs[name]}"
        parts = name.split("/")
        prefixes = ["/".join(parts[:k]) for k in range(1, len(parts))]
        for prefix in prefixes:
            if prefix in self.files:
                return f"is inside {prefix!r}, which asset {self.files[prefix]} makes a file"
        for prefix in prefixes:
            self.dirs.setdefault(prefix, index)
        self.files[name] = index
        return None


def _check_file(file: BundleFile, index: int, names: _Names, where: str) -> None:
    problem = _name_problem(file.name) or names.claim(file.name, index)
    if problem:
        raise _invalid(f"{where}/{index}/asset_name", problem)
    if file.kind == "link":
        problem = _link_problem(file.name, file.data)
    elif file.kind == "archive" and _archive_format(file.data) is None:
        problem = "not a zip or tar.gz archive"
    if problem:
        raise _invalid(f"{where}/{index}/asset_value", problem)


def _kind(asset: Asset) -> FileKind:
    if asset.link:
        return "link"
    return "archive" if asset.asset_type == "archive" else "file"


def decode_assets(
    assets: list[Asset], *, max_bundle_bytes: int, where: str = ASSETS_PATH
) -> Bundle:
    """Check a request's assets and decode them into a bundle (same order, so indexes agree)."""
    if not assets:
        raise _invalid(where, "at least one asset is required")
    names = _Names()
    files: list[BundleFile] = []
    total = 0
    for index, asset in enumerate(assets):
        if asset.link and asset.asset_type == "archive":
            raise _invalid(f"{where}/{index}/link", "an archive cannot also be a link")
        value_path = f"{where}/{index}/asset_value"
        try:
            data = base64.b64decode(asset.asset_value, validate=True)
        except ValueError:
            raise _invalid(value_path, "is not valid base64") from None
        total += len(data)
        if total > max_bundle_bytes:
            raise _too_large(value_path, f"the decoded assets exceed {max_bundle_bytes} bytes")
        file = BundleFile(name=asset.asset_name, kind=_kind(asset), data=data)
        _check_file(file, index, names, where)
        files.append(file)
    return Bundle(files=files)


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


def check_asset_count(body: bytes, where: str = ASSETS_PATH) -> None:
    """Refuse a body with more assets than a bundle may hold before decoding it (a million tiny
    assets would hold the event loop for seconds). Counting the key is exact enough: inside a
    JSON string its quotes would be escaped."""
    count = body.count(b'"asset_name"')
    if count > MAX_FILES:
        raise _too_large(where, f"{count} assets, over the limit of {MAX_FILES}")


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


# ---- the per-worker cache --------------------------------------------------------------------


class WorkspaceCache:
    """One read-only materialised workspace per bundle digest, under ``root``.

    Safe to share between processes: a workspace appears under its digest only once complete,
    by an atomic rename of a private temporary directory.
    """

    def __init__(self, root: Path, *, max_total_bytes: int) -> None:
        self.root = root
        self.max_total_bytes = max_total_bytes
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / digest

    def path_for(self, digest: str) -> Path | None:
        path = self._path(digest)
        return path if path.is_dir() and not path.is_symlink() else None

    def install(self, digest: str, bundle: Bundle) -> Path:
        final = self._path(digest)
        if self.path_for(digest) is not None:
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f"{digest}.tmp-", dir=self.root))
        try:
            materialize(bundle, tmp, max_total_bytes=self.max_total_bytes)
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                remove_tree(tmp)  # another process installed the same digest first
        except BaseException:
            remove_tree(tmp)
            raise
        return final

    def remove(self, digest: str) -> None:
        path = self._path(digest)
        doomed = self.root / f"{digest}.rm-{secrets.token_hex(8)}"
        try:
            # Renaming first makes the workspace disappear at once for path_for.
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        remove_tree(doomed)


# ---- handlers -----------------------------------------------------------------------------------


def _is_identifier(name: str, runtime: str) -> bool:
    if runtime == "python":
        return name.isidentifier() and not keyword.iskeyword(name)
    return _JS_IDENTIFIER.fullmatch(name) is not None


def handler_file(handler: str, runtime: str) -> tuple[str, str]:
    """Split ``<path>.<export>`` into the handler's file (bundle-relative) and export name."""
    extension = _EXTENSIONS.get(runtime)
    if extension is None:
        raise _invalid(RUNTIME_PATH, f"unknown runtime {runtime!r}")
    module, dot, export = handler.rpartition(".")
    if not dot or not module or not export:
        raise _invalid(HANDLER_PATH, f"{handler!r} is not <file>.<export>, e.g. index.handler")
    if not _is_identifier(export, runtime):
        raise _invalid(HANDLER_PATH, f"export {export!r} is not an identifier")
    stem, dot, written_extension = module.rpartition(".")
    if dot and f".{written_extension}" in (*_EXTENSIONS.values(), ".mjs", ".cjs"):
        raise _invalid(
            HANDLER_PATH,
            f"{handler!r}: write the file without its extension, {stem}.{export} "
            f"(the {runtime} runtime adds {extension})",
        )
    path = module + extension
    problem = _name_problem(path)
    if problem:
        raise _invalid(HANDLER_PATH, f"handler file {path!r} {problem}")
    return path, export


def check_handler_present(workspace: Path, handler: str, runtime: str) -> None:
    """Fail unless the handler's file is a regular file in the workspace (links inside count)."""
    path, _export = handler_file(handler, runtime)
    root = os.path.realpath(workspace)
    real = os.path.realpath(workspace / path)
    if not (real.startswith(root + os.sep) and os.path.isfile(real)):
        hint = ""
        for other, other_extension in _EXTENSIONS.items():
            twin = path.removesuffix(_EXTENSIONS[runtime]) + other_extension
            if other != runtime and (workspace / twin).is_file():
                hint = f" (the bundle has {twin}: is the runtime {other}?)"
        raise _invalid(HANDLER_PATH, f"handler file {path} is not in the bundle{hint}")
