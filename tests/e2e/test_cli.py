"""The CLI as a user runs it: a real ``computebus`` process against the session's API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx

from executor.client.bundling import files_to_ship, pack
from executor.client.deploy import read_project

README = Path(__file__).resolve().parents[2] / "README.md"


async def cli(
    *args: str, api: str | None, cwd: Path | None = None, stdin: bytes | None = None
) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "executor.cli", *args]
    env = dict(os.environ)
    if api is not None:
        argv += ["--api", api]
        env["COMPUTEBUS_TOKEN"] = _TOKENS.get(api, "")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


_TOKENS: dict[str, str] = {}  # API url -> the token its test client sends


def api_of(http: httpx.AsyncClient) -> str:
    """The API the client talks to; the CLI gets its token through COMPUTEBUS_TOKEN."""
    url = str(http.base_url).rstrip("/")
    _TOKENS[url] = http.headers["authorization"].split()[1]
    return url


def collection() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


async def test_deploy_creates_then_updates_and_says_what_changed(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    api, ct = api_of(http), collection()
    fn = tmp_path / "fn"
    fn.mkdir()
    (fn / "index.js").write_text("exports.handler = async (e) => ({ v: 1, g: process.env.G });")
    (fn / "computebus.toml").write_text(
        f'collection = "{ct}"\nname = "hello"\ntimeout = 4000\n[env]\nG = "hi"\n'
    )
    code, out, err = await cli("deploy", str(fn), api=api)
    assert code == 0, err
    created = json.loads(out)
    assert created["action"] == "created" and created["revision"] == 1
    code, out, _ = await cli("invoke", f"{ct}/hello", api=api)
    assert code == 0 and json.loads(out) == {"v": 1, "g": "hi"}
    shown = (await http.get(f"/compute/functions/{ct}/hello")).json()["body"]
    assert shown["compute_asset"]["timeout"] == 4000

    code, out, _ = await cli("deploy", str(fn), api=api)
    assert code == 0 and json.loads(out)["action"] == "unchanged"

    (fn / "index.js").write_text("exports.handler = async (e) => ({ v: 2 });")
    code, out, err = await cli("deploy", str(fn), "--stage", "--ttl", "120000", api=api)
    assert code == 0, err
    staged = json.loads(out)
    assert staged == {
        "deployed": f"{ct}/hello",
        "action": "updated",
        "service": created["service"],
        "revision": 2,
        "promoted": False,
        "changed": ["code", "ttl"],
    }
    code, out, _ = await cli("invoke", f"{ct}/hello", api=api)
    assert json.loads(out)["v"] == 1  # staged: production still runs revision 1
    code, out, _ = await cli("invoke", f"{ct}/hello", "--revision", "2", api=api)
    assert json.loads(out) == {"v": 2}
    code, out, _ = await cli("promote", f"{ct}/hello", "2", api=api)
    assert code == 0 and json.loads(out) == {"alias": "production", "revision_number": 2}
    code, out, _ = await cli("rollback", f"{ct}/hello", api=api)
    assert code == 0 and json.loads(out)["revision_number"] == 1
    code, out, _ = await cli("revisions", f"{ct}/hello", api=api)
    assert [line.split("\t")[0] for line in out.splitlines()] == ["1", "2"]
    assert out.splitlines()[0].endswith("production")

    code, out, _ = await cli("rm", f"{ct}/hello", api=api)
    assert code == 0 and json.loads(out)["deleted"] == f"{ct}/hello"
    code, _, err = await cli("describe", f"{ct}/hello", api=api)
    assert code == 2 and one_line(err).startswith("computebus: function_not_found (404)")


async def test_a_deploy_never_promotes_code_only_a_staged_revision_held(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    api, ct = api_of(http), collection()
    fn = tmp_path / "fn"
    fn.mkdir()
    code_a = "exports.handler = async () => ({ code: 'A', env: process.env.E || null });"
    (fn / "index.js").write_text(code_a)
    args = ("deploy", str(fn), "--collection", ct, "--name", "f")
    assert (await cli(*args, api=api))[0] == 0
    (fn / "index.js").write_text(code_a.replace("'A'", "'B'"))
    assert (await cli(*args, "--stage", api=api))[0] == 0  # revision 2 holds B, staged
    (fn / "index.js").write_text(code_a)  # back to A, and only the env changes
    code, out, err = await cli(*args, "--env", "E=1", api=api)
    assert code == 0, err
    assert json.loads(out)["changed"] == ["env_vars"]
    _, out, _ = await cli("invoke", f"{ct}/f", api=api)
    assert json.loads(out) == {"code": "A", "env": "1"}  # not B's code


async def test_what_ships_leaves_secrets_and_caches_out(tmp_path: Path) -> None:
    fn = tmp_path / "fn"
    for name in (
        "index.py",
        "lib/util.py",
        ".env",
        ".env.local",
        ".git/config",
        "__pycache__/index.cpython-311.pyc",
        "node_modules/.cache/x",
        "node_modules/dep/index.js",
        "server.key",
        "notes/draft.md",
        "notes/keep.md",
    ):
        (fn / name).parent.mkdir(parents=True, exist_ok=True)
        (fn / name).write_text("x")
    (fn / ".computebusignore").write_text("notes/\n!notes/keep.md\n*.md\n")
    shipped = sorted(p.relative_to(fn).as_posix() for p in files_to_ship(fn))
    assert shipped == ["index.py", "lib/util.py", "node_modules/dep/index.js"]
    # The rules hold for a staged copy too (where dependencies are installed).
    (fn / ".computebusignore").write_text("!.env\n")
    staged = tmp_path / "staged"
    shutil.copytree(fn, staged)
    (staged / ".computebusignore").unlink()
    names = {a["asset_name"] for a in pack(staged, rules_from=fn)}
    assert ".env" in names and "server.key" not in names


async def test_deploy_installs_python_requirements_into_the_bundle(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    wheel = tmp_path / "wheels" / "tinydep-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("tinydep/__init__.py", "def shout(s):\n    return s.upper() + '!'\n")
        z.writestr(
            "tinydep-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n"
        )
        z.writestr(
            "tinydep-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr("tinydep-1.0.dist-info/RECORD", "")
    fn = tmp_path / "fn"
    fn.mkdir()
    (fn / "requirements.txt").write_text("../wheels/tinydep-1.0-py3-none-any.whl\n")
    (fn / "index.py").write_text(
        "import tinydep\n\ndef handler(e, c):\n    return tinydep.shout(e)\n"
    )
    ct = collection()
    code, _, err = await cli(
        "deploy", str(fn), "--collection", ct, "--name", "dep", api=api_of(http)
    )
    assert code == 0, err
    assert not (fn / "tinydep").exists()  # installed into a scratch copy, not the folder
    assert not list(tmp_path.glob(".fn.computebus-build-*"))  # and that copy is gone
    code, out, err = await cli("invoke", f"{ct}/dep", '"hey"', api=api_of(http))
    assert (code, json.loads(out)) == (0, "HEY!"), err


async def test_deploy_installs_node_dependencies_into_the_bundle(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    dep = tmp_path / "dep"
    dep.mkdir()
    (dep / "package.json").write_text('{"name": "dep", "version": "1.0.0", "main": "index.js"}')
    (dep / "index.js").write_text("module.exports = (n) => 'dep says ' + n;")
    fn = tmp_path / "fn"
    fn.mkdir()
    (fn / "package.json").write_text(
        '{"name": "fn", "version": "1.0.0", "dependencies": {"dep": "file:../dep"}}'
    )
    (fn / "index.js").write_text(
        "const dep = require('dep');\nexports.handler = async (e) => dep(e);"
    )
    ct = collection()
    code, _, err = await cli(
        "deploy", str(fn), "--collection", ct, "--name", "dep", api=api_of(http)
    )
    assert code == 0, err
    code, out, err = await cli("invoke", f"{ct}/dep", "7", api=api_of(http))
    assert (code, json.loads(out)) == (0, "dep says 7"), err


async def test_invoke_takes_its_payload_from_an_argument_a_file_or_stdin(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    api, ct = api_of(http), collection()
    fn = tmp_path / "fn"
    fn.mkdir()
    (fn / "index.js").write_text("exports.handler = async (e) => e;")
    assert (await cli("deploy", str(fn), "--collection", ct, "--name", "echo", api=api))[0] == 0
    payload = tmp_path / "payload.json"
    payload.write_text('{"from": "file"}')
    _, out, _ = await cli("invoke", f"{ct}/echo", '{"from": "arg"}', api=api)
    assert json.loads(out) == {"from": "arg"}
    _, out, _ = await cli("invoke", f"{ct}/echo", f"@{payload}", api=api)
    assert json.loads(out) == {"from": "file"}
    _, out, _ = await cli("invoke", f"{ct}/echo", "-", api=api, stdin=b'{"from": "stdin"}')
    assert json.loads(out) == {"from": "stdin"}
    _, out, _ = await cli("invoke", f"{ct}/echo", '"text"', api=api)
    assert json.loads(out) == "text"


async def test_describe_shows_assets_by_name_and_size(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    api, ct = api_of(http), collection()
    fn = tmp_path / "fn"
    fn.mkdir()
    source = "exports.handler = async (e) => e;"
    (fn / "index.js").write_text(source)
    assert (await cli("deploy", str(fn), "--collection", ct, "--name", "d", api=api))[0] == 0
    code, out, _ = await cli("describe", f"{ct}/d", api=api)
    assert code == 0
    assets = json.loads(out)["compute_asset"]["assets"]
    assert assets == [{"asset_name": "index.js", "bytes": len(source)}]


async def test_a_failed_function_exits_1_and_names_its_invocation(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    api, ct = api_of(http), collection()
    fn = tmp_path / "fn"
    fn.mkdir()
    (fn / "index.py").write_text("def handler(e, c):\n    raise ValueError('no such order')\n")
    assert (await cli("deploy", str(fn), "--collection", ct, "--name", "bad", api=api))[0] == 0
    code, out, err = await cli("invoke", f"{ct}/bad", "{}", api=api)
    assert code == 1 and out == ""
    assert "function_error (500)" in err and "no such order" in err
    invocation_id = re.search(r"invocation ([0-9a-f]{32})", err)
    assert invocation_id is not None, err
    code, out, err = await cli("status", f"{ct}/bad", invocation_id.group(1), api=api)
    assert code == 1 and "no such order" in err
    shown = json.loads(out)  # the failed record itself, logs and all
    assert shown["status"] == "failed" and shown["error_code"] == "function_error"
    code, out, _ = await cli("logs", f"{ct}/bad", "--status", "failed", api=api)
    assert code == 0 and f"{invocation_id.group(1)} rev 1 function_error" in out
    assert "ValueError: no such order" in out
    # A handler without its export (created, as the contract's seed is) fails as the function.
    (fn / "index.py").write_text("def handle(e, c):\n    return 1\n")
    assert (await cli("deploy", str(fn), "--collection", ct, "--name", "typo", api=api))[0] == 0
    code, _, err = await cli("invoke", f"{ct}/typo", "{}", api=api)
    assert code == 1 and "handler_not_found (500)" in err and "invocation " in err


async def test_every_mistake_is_one_line_and_exit_2(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    nowhere = "http://127.0.0.1:9"
    code, _, err = await cli("ls", api=nowhere)
    assert code == 2
    assert one_line(err) == (
        f"computebus: no computebus API at {nowhere}: is `computebus serve` running? "
        "(COMPUTEBUS_API / --api)"
    )
    code, _, err = await cli("ls", api="127.0.0.1:8080")
    assert code == 2 and "is not an http:// or https:// URL" in one_line(err)
    code, _, err = await cli("invoke", "demo/x", "{nope", api=api_of(http))
    assert code == 2 and "the payload is not JSON" in one_line(err)
    code, _, err = await cli("invoke", "no-slash", api=api_of(http))
    assert code == 2 and "expected COLLECTION/NAME" in one_line(err)
    fn = tmp_path / "fn"
    fn.mkdir()
    (fn / "index.js").write_text("exports.handler = async (e) => e;")
    args = ("deploy", str(fn), "--collection", collection(), "--name", "s")
    code, _, err = await cli(*args, "--schema-in", str(tmp_path / "missing.json"), api=api_of(http))
    assert code == 2 and "cannot read the schema file" in one_line(err)
    code, _, err = await cli("deploy", str(fn), api=api_of(http))
    assert code == 2 and "give --collection and --name" in one_line(err)
    (fn / "computebus.toml").write_text('colection = "typo"\n')
    code, _, err = await cli("deploy", str(fn), api=api_of(http))
    assert code == 2 and "unknown key 'colection'" in one_line(err)
    (fn / "computebus.toml").unlink()
    (fn / "index.js").write_text("exports.handler = async (e) => {\n")
    code, _, err = await cli(*args, api=api_of(http))
    assert code == 2 and "SyntaxError" in err and "Traceback" not in err
    code, out, _ = await cli("--version", api=None)
    assert code == 0 and out.startswith("computebus ")
    code, _, err = await cli("invoke", "demo/x", "--alais", "canary", api=None)
    assert code == 2 and "unrecognized arguments: --alais canary (did you mean --alias?)" in err
    assert err.startswith("usage: computebus invoke")  # the verb's usage, not the top's


def test_the_readme_project_file_is_one_deploy_reads(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    assert block is not None
    (tmp_path / "computebus.toml").write_text(block.group(1))
    project: dict[str, Any] = read_project(tmp_path)
    assert project["collection"] == "demo" and project["env"] == {"GREETING": "Hello"}


def test_every_flag_has_help() -> None:
    import argparse

    from executor.cli_args import verb_parsers

    verbs = verb_parsers()
    assert {"serve", "deploy", "invoke", "bench"} <= set(verbs)
    missing = [
        f"{verb} {action.option_strings or action.dest}"
        for verb, sub in verbs.items()
        for action in sub._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []


async def test_a_one_server_cluster_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    data_dir = tmp_path / "cluster"
    code, _, err = await cli(
        "cluster", "--servers", "1", "--data-dir", str(data_dir), "--port", "0", api=None
    )
    assert code == 2
    assert "--servers: 1 is below the least, 2" in err
    assert not data_dir.exists()
