"""The rules every bundle obeys, checked before anything is stored: names, link targets, kinds
and counts; ``decode_assets`` turns a request's assets into a ``Bundle``."""

from __future__ import annotations

import base64
import gzip
import posixpath
import re
import tarfile
import zipfile
import zlib

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


def check_asset_count(body: bytes, where: str = ASSETS_PATH) -> None:
    """Refuse a body with more assets than a bundle may hold before decoding it (a million tiny
    assets would hold the event loop for seconds). Counting the key is exact enough: inside a
    JSON string its quotes would be escaped."""
    count = body.count(b'"asset_name"')
    if count > MAX_FILES:
        raise _too_large(where, f"{count} assets, over the limit of {MAX_FILES}")
