from __future__ import annotations

import base64
import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.bundle.handlers import check_handler_present, handler_file
from executor.bundle.rules import decode_assets
from executor.bundle.unpack import materialize
from executor.runtime.workspace_cache import WorkspaceCache
from schemas.bundles import Bundle, BundleFile, bundle_digest, encode_bundle
from schemas.errors import ComputeError, InvalidRequest, PayloadTooLarge
from schemas.functions import Asset

MB = 1024 * 1024


def asset(name: str, data: bytes | str, asset_type: str = "file", link: bool = False) -> Asset:
    raw = data.encode() if isinstance(data, str) else data
    value = base64.b64encode(raw).decode()
    return Asset(asset_name=name, asset_value=value, asset_type=asset_type, link=link)


def link(name: str, target: str) -> Asset:
    return asset(name, target, link=True)


def archive(name: str, data: bytes) -> Asset:
    return asset(name, data, asset_type="archive")


def decode(*assets: Asset, max_bundle_bytes: int = 10 * MB) -> Bundle:
    return decode_assets(list(assets), max_bundle_bytes=max_bundle_bytes)


def build(tmp_path: Path, *assets: Asset, max_total_bytes: int = 10 * MB) -> Path:
    dest = tmp_path / "ws"
    dest.mkdir()
    materialize(decode(*assets), dest, max_total_bytes=max_total_bytes)
    return dest


def paths(error: ComputeError) -> list[str]:
    return [item["path"] for item in error.details]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def make_zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


def make_tar(members: list[tarfile.TarInfo | tuple[str, bytes]], *, gz: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def tar_entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


# ---- decode_assets --------------------------------------------------------------------------


def test_good_bundle_is_written_read_only(tmp_path: Path) -> None:
    dest = build(
        tmp_path,
        asset("index.js", "exports.handler = async () => 1;\n"),
        asset("lib/util.js", "module.exports = {};\n"),
        asset("lib/deep/data.bin", bytes(range(256))),
        asset("empty.txt", b""),
    )
    assert (dest / "index.js").read_text() == "exports.handler = async () => 1;\n"
    assert (dest / "lib/deep/data.bin").read_bytes() == bytes(range(256))
    assert (dest / "empty.txt").read_bytes() == b""
    for file in ("index.js", "lib/util.js", "lib/deep/data.bin", "empty.txt"):
        assert mode(dest / file) == 0o444
    for directory in (dest, dest / "lib", dest / "lib/deep"):
        assert mode(directory) == 0o555


def test_bundle_kinds_follow_asset_type_and_link() -> None:
    bundle = decode(
        asset("a.txt", "a"),
        asset("b.txt", "b", asset_type="text/plain"),
        archive("c.zip", make_zip({"x": b"x"})),
        link("d", "a.txt"),
    )
    assert [(f.name, f.kind) for f in bundle.files] == [
        ("a.txt", "file"),
        ("b.txt", "file"),
        ("c.zip", "archive"),
        ("d", "link"),
    ]
    assert bundle.files[3].data == b"a.txt"


@pytest.mark.parametrize("value", ["aGVs!!bG8=", "aGVs\nbG8=", "aGVs bG8=", "aGVsbG8", "aGVsbG8=é"])
def test_base64_is_strict(value: str) -> None:
    good = asset("index.js", "x")
    bad = Asset(asset_name="b.txt", asset_value=value)
    with pytest.raises(InvalidRequest) as caught:
        decode(good, bad)
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_value"]
    assert "asset_value" in caught.value.message
    assert "base64" in caught.value.message


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "..",
        "a/../b",
        "../a",
        ".",
        "./a",
        "a/./b",
        "a\x00b",
        "a\\b",
        "a//b",
        "a/",
        "x" * 256,
        "/".join(["y" * 200] * 6),
    ],
)
def test_bad_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode(asset("index.js", "x"), asset(name, "x"))
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_name"]
    assert "asset_name" in caught.value.message


def test_longest_names_are_accepted() -> None:
    decode(asset("x" * 255, "x"), asset("/".join(["y" * 200] * 5), "y"))


@pytest.mark.parametrize(
    "names",
    [["a", "a"], ["a", "a/b"], ["a/b", "a"], ["d/a", "d/a/b/c"], ["d/a/b/c", "d/a/b"]],
)
def test_duplicates_and_file_directory_clashes_are_rejected(names: list[str]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode(*(asset(name, "x") for name in names))
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_name"]


def test_empty_asset_list_is_rejected() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_assets([], max_bundle_bytes=MB)
    assert paths(caught.value) == ["/compute_asset/assets"]


def test_where_prefixes_the_detail_paths() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_assets([asset("../x", "x")], max_bundle_bytes=MB, where="/assets")
    assert paths(caught.value) == ["/assets/0/asset_name"]


def test_decoded_size_over_the_limit_is_payload_too_large() -> None:
    decode(asset("a", b"x" * 60), asset("b", b"x" * 40), max_bundle_bytes=100)
    with pytest.raises(PayloadTooLarge) as caught:
        decode(asset("a", b"x" * 60), asset("b", b"x" * 41), max_bundle_bytes=100)
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_value"]


def test_archive_that_is_not_an_archive_is_rejected() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode(archive("deps.zip", b"hello"))
    assert paths(caught.value) == ["/compute_asset/assets/0/asset_value"]
    assert "asset_value: not a zip or tar.gz archive" in caught.value.message


def test_an_archive_cannot_be_a_link() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode(asset("deps.zip", make_zip({"a": b"a"}), asset_type="archive", link=True))
    assert paths(caught.value) == ["/compute_asset/assets/0/link"]


# ---- links ---------------------------------------------------------------------------------


def test_links_inside_the_bundle_are_made(tmp_path: Path) -> None:
    dest = build(
        tmp_path,
        asset("lib/real.js", "exports.handler = () => 1;"),
        link("index.js", "lib/real.js"),
        link("lib/up", "../index.js"),
        link("lib/self", "."),
        link("dangling", "not/there"),
    )
    assert os.readlink(dest / "index.js") == "lib/real.js"
    assert (dest / "lib/up").read_text() == "exports.handler = () => 1;"
    assert os.path.islink(dest / "dangling")
    assert mode(dest / "lib/real.js") == 0o444


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("a", "/etc/passwd"),
        ("a", ".."),
        ("a", "../x"),
        ("a", "lib/../../x"),
        ("lib/l", "../../x"),
        ("a", ""),
        ("a", "x\x00y"),
    ],
)
def test_links_leaving_the_bundle_are_rejected(name: str, target: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode(asset("index.js", "x"), link(name, target))
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_value"]


def test_link_chain_that_escapes_once_followed_is_rejected(tmp_path: Path) -> None:
    # Lexically "a", but a/b/l resolves to the bundle root, so two ".." leave it.
    assets = (link("a/b/l", "../../x"), link("m", "a/b/l/../.."))
    with pytest.raises(InvalidRequest) as caught:
        build(tmp_path, *assets)
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_value"]


# ---- archives ---------------------------------------------------------------------------------


def test_zip_is_unpacked_next_to_its_name(tmp_path: Path) -> None:
    data = make_zip(
        {"index.js": b"zip index", "lib/": b"", "lib/a.js": b"a", "./b.js": b"b"},
        links={"lib/alias.js": "a.js"},
    )
    dest = build(tmp_path, asset("main.js", "m"), archive("pkg/bundle.zip", data))
    assert (dest / "pkg/index.js").read_bytes() == b"zip index"
    assert (dest / "pkg/lib/a.js").read_bytes() == b"a"
    assert (dest / "pkg/b.js").read_bytes() == b"b"
    assert os.readlink(dest / "pkg/lib/alias.js") == "a.js"
    assert not (dest / "pkg/bundle.zip").exists()
    assert mode(dest / "pkg/lib/a.js") == 0o444
    assert mode(dest / "pkg/lib") == 0o555


def test_tar_gz_is_unpacked_in_place(tmp_path: Path) -> None:
    data = make_tar(
        [
            tar_entry(".", tarfile.DIRTYPE),
            tar_entry("./src", tarfile.DIRTYPE),
            ("./src/app.js", b"exports.main = () => 2;"),
            ("./index.js", b"exports.handler = () => 1;"),
            tar_entry("./src/index.js", tarfile.SYMTYPE, "../index.js"),
        ]
    )
    dest = build(tmp_path, archive("code.tar.gz", data))
    assert sorted(os.listdir(dest)) == ["index.js", "src"]
    assert (dest / "src/app.js").read_bytes() == b"exports.main = () => 2;"
    assert (dest / "src/index.js").read_bytes() == b"exports.handler = () => 1;"
    assert mode(dest / "index.js") == 0o444
    assert mode(dest / "src") == 0o555
    check_handler_present(dest, "src/app.main", "nodejs")


def test_plain_tar_is_accepted(tmp_path: Path) -> None:
    dest = build(tmp_path, archive("code.tar", make_tar([("index.py", b"x")], gz=False)))
    assert (dest / "index.py").read_bytes() == b"x"


BAD_ARCHIVES: dict[str, Callable[[], bytes]] = {
    "zip dot-dot": lambda: make_zip({"../evil": b"x"}),
    "zip nested dot-dot": lambda: make_zip({"a/../../evil": b"x"}),
    "zip absolute": lambda: make_zip({"/tmp/evil": b"x"}),
    "zip symlink out": lambda: make_zip({}, links={"l": "../../evil"}),
    "zip symlink absolute": lambda: make_zip({}, links={"l": "/etc/passwd"}),
    "tar dot-dot": lambda: make_tar([("../evil", b"x")]),
    "tar absolute": lambda: make_tar([("/tmp/evil", b"x")]),
    "tar symlink out": lambda: make_tar([tar_entry("l", tarfile.SYMTYPE, "../../evil")]),
    "tar symlink then write through": lambda: make_tar(
        [tar_entry("l", tarfile.SYMTYPE, "."), ("l/x", b"x")]
    ),
    "tar hard link": lambda: make_tar([("a", b"x"), tar_entry("h", tarfile.LNKTYPE, "a")]),
    "tar fifo": lambda: make_tar([tar_entry("f", tarfile.FIFOTYPE)]),
    "tar device": lambda: make_tar([tar_entry("d", tarfile.CHRTYPE)]),
    "tar duplicate": lambda: make_tar([("a", b"x"), ("a", b"y")]),
    "corrupt gzip": lambda: b"\x1f\x8b" + b"garbage" * 20,
    "corrupt zip": lambda: b"PK\x03\x04" + b"garbage" * 20,
}


@pytest.mark.parametrize("make", BAD_ARCHIVES.values(), ids=BAD_ARCHIVES.keys())
def test_unsafe_or_broken_archives_are_rejected(tmp_path: Path, make: Callable[[], bytes]) -> None:
    root = tmp_path / "deep" / "er"
    root.mkdir(parents=True)
    with pytest.raises(InvalidRequest) as caught:
        build(root, asset("index.js", "x"), archive("a/deps", make()))
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_value"]
    assert not any(tmp_path.rglob("evil"))


def test_archive_entry_colliding_with_a_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as caught:
        build(tmp_path, asset("index.js", "x"), archive("deps.zip", make_zip({"index.js": b"y"})))
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_value"]


def test_too_many_entries_is_payload_too_large(tmp_path: Path) -> None:
    dest = tmp_path / "ws"
    dest.mkdir()
    bundle = decode(archive("many.zip", make_zip({f"f{i}": b"" for i in range(20)})))
    with pytest.raises(PayloadTooLarge):
        materialize(bundle, dest, max_total_bytes=MB, max_files=5)


def test_file_over_max_total_bytes_is_payload_too_large(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        build(tmp_path, asset("a", b"x" * 600), asset("b", b"x" * 600), max_total_bytes=1000)
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_value"]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_bomb_stops_at_the_limit_and_leaves_nothing(tmp_path: Path, kind: str) -> None:
    zeros = bytes(50 * MB)
    data = make_zip({"zeros": zeros}) if kind == "zip" else make_tar([("zeros", zeros)])
    assert len(data) < MB
    bundle = decode(asset("index.js", "x"), archive("bomb", data))
    root = tmp_path / "cache"
    cache = WorkspaceCache(root, max_total_bytes=MB)
    digest = bundle_digest(encode_bundle(bundle))
    with pytest.raises(PayloadTooLarge) as caught:
        cache.install(digest, bundle)
    assert paths(caught.value) == ["/compute_asset/assets/1/asset_value"]
    assert list(root.iterdir()) == []


def test_huge_tar_header_is_not_read_into_memory(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("a")
        info.pax_headers = {"comment": "x" * (20 * MB)}
        tf.addfile(info, io.BytesIO(b""))
    dest = tmp_path / "ws"
    dest.mkdir()
    bundle = decode(archive("a.tgz", buffer.getvalue()))
    with pytest.raises(PayloadTooLarge):
        materialize(bundle, dest, max_total_bytes=MB, max_files=10)


# ---- WorkspaceCache ---------------------------------------------------------------------------


def digest_of(bundle: Bundle) -> str:
    return bundle_digest(encode_bundle(bundle))


def test_cache_install_path_for_and_remove(tmp_path: Path) -> None:
    cache = WorkspaceCache(tmp_path / "cache", max_total_bytes=MB)
    bundle = decode(asset("index.js", "x"), asset("lib/a.js", "a"))
    digest = digest_of(bundle)
    assert cache.path_for(digest) is None
    path = cache.install(digest, bundle)
    assert path == tmp_path / "cache" / digest
    assert cache.path_for(digest) == path
    assert (path / "lib/a.js").read_text() == "a"
    assert mode(path) == 0o555
    assert cache.install(digest, bundle) == path
    cache.remove(digest)
    assert cache.path_for(digest) is None
    assert list((tmp_path / "cache").iterdir()) == []
    cache.remove(digest)


def test_failed_install_leaves_no_tmp_dir(tmp_path: Path) -> None:
    cache = WorkspaceCache(tmp_path / "cache", max_total_bytes=MB)
    bundle = decode(
        asset("index.js", "x"),
        asset("lib/a.js", "a"),
        archive("lib/deps.tgz", b"\x1f\x8b" + b"garbage" * 20),
    )
    with pytest.raises(InvalidRequest):
        cache.install(digest_of(bundle), bundle)
    assert list((tmp_path / "cache").iterdir()) == []


def test_install_rejects_an_unsafe_bundle_from_the_store(tmp_path: Path) -> None:
    cache = WorkspaceCache(tmp_path / "cache", max_total_bytes=MB)
    bundle = Bundle(files=[BundleFile(name="../escape", kind="file", data=b"x")])
    with pytest.raises(InvalidRequest) as caught:
        cache.install(digest_of(bundle), bundle)
    assert paths(caught.value) == ["/compute_asset/assets/0/asset_name"]
    assert list((tmp_path / "cache").iterdir()) == []
    assert not (tmp_path / "escape").exists()


class _RacingCache(WorkspaceCache):
    """Never sees an existing workspace before materialising, like a process that lost a race."""

    def path_for(self, digest: str) -> Path | None:
        return None


def test_install_losing_a_race_uses_the_winner(tmp_path: Path) -> None:
    bundle = decode(asset("index.js", "x"))
    digest = digest_of(bundle)
    winner = WorkspaceCache(tmp_path / "cache", max_total_bytes=MB).install(digest, bundle)
    inode = os.stat(winner).st_ino
    loser = _RacingCache(tmp_path / "cache", max_total_bytes=MB)
    assert loser.install(digest, bundle) == winner
    assert os.stat(winner).st_ino == inode
    assert os.listdir(tmp_path / "cache") == [digest]


@pytest.mark.parametrize("digest", ["../x", "A" * 64, "a" * 63, "a" * 65, "a" * 64 + "\n", ""])
def test_cache_rejects_digests_that_are_not_sha256_hex(tmp_path: Path, digest: str) -> None:
    cache = WorkspaceCache(tmp_path / "cache", max_total_bytes=MB)
    bundle = decode(asset("index.js", "x"))
    with pytest.raises(ValueError):
        cache.path_for(digest)
    with pytest.raises(ValueError):
        cache.install(digest, bundle)
    with pytest.raises(ValueError):
        cache.remove(digest)


# ---- handlers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "runtime", "expected"),
    [
        ("index.handler", "nodejs", ("index.js", "handler")),
        ("index.handler", "python", ("index.py", "handler")),
        ("src/app.main", "nodejs", ("src/app.js", "main")),
        ("src/app.main", "python", ("src/app.py", "main")),
        ("lib/v1.2/app.run", "nodejs", ("lib/v1.2/app.js", "run")),
        ("index.$handler", "nodejs", ("index.js", "$handler")),
    ],
)
def test_handler_file_splits_on_the_last_dot(
    handler: str, runtime: str, expected: tuple[str, str]
) -> None:
    assert handler_file(handler, runtime) == expected


@pytest.mark.parametrize(
    ("handler", "runtime"),
    [
        ("index", "nodejs"),
        ("index.", "nodejs"),
        (".handler", "nodejs"),
        ("", "nodejs"),
        ("index.1abc", "nodejs"),
        ("index.my-handler", "nodejs"),
        ("index.$handler", "python"),
        ("index.class", "python"),
        ("../../etc/passwd.x", "nodejs"),
        ("/abs/index.handler", "nodejs"),
    ],
)
def test_bad_handlers_are_rejected(handler: str, runtime: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        handler_file(handler, runtime)
    assert paths(caught.value) == ["/compute_asset/handler"]


def test_check_handler_present(tmp_path: Path) -> None:
    dest = build(
        tmp_path,
        asset("index.js", "x"),
        asset("lib/real.py", "def main(e, c): return 1"),
        link("app.py", "lib/real.py"),
        asset("dir.js/inner", "x"),
    )
    check_handler_present(dest, "index.handler", "nodejs")
    check_handler_present(dest, "app.main", "python")
    with pytest.raises(InvalidRequest) as caught:
        check_handler_present(dest, "index.handler", "python")
    assert paths(caught.value) == ["/compute_asset/handler"]
    assert "handler file index.py is not in the bundle" in caught.value.message
    with pytest.raises(InvalidRequest):
        check_handler_present(dest, "dir.handler", "nodejs")
