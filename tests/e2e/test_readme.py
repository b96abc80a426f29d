"""README.md's examples run as written, against a fresh ``computebus serve`` started the way
the README says (default, relative data dir): every ``sh`` and ``python`` block of the first
minute, of "Lifecycle", of "HTTP routes", of "Async invocations", of "Schedules" and of "What
to scrape", in order, with the printed URLs and the ids they create put in for the README's
placeholders. A ``# -> {...}`` comment (without ``...``) is checked against what the block
printed, whitespace aside."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from executor.serve import parse_ready_line

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = (
    "A first function in under a minute",
    "Lifecycle: stage, invoke by alias, promote, roll back",
    "HTTP routes",
    "Async invocations",
    "Schedules",
    "Subject triggers",
    "What to scrape",
)
README_API = "http://127.0.0.1:8080"
README_NATS = "nats://client:<password>@127.0.0.1:40123"
README_NATS_ADDRESS = "nats://127.0.0.1:40123"  # where a token connects
README_SERVICE = "123456789"
README_INVOCATION = "5c0f..."
BLOCK_TIMEOUT_S = 60


@dataclass
class Block:
    section: str
    lang: str
    code: str


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    section = ""
    lines = iter(README.read_text().splitlines())
    for line in lines:
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            continue
        fence = re.fullmatch(r"```(\w*)", line)
        if fence is None:
            continue
        body = []
        for inner in lines:
            if inner == "```":
                break
            body.append(inner)
        if section in SECTIONS and fence.group(1) in ("sh", "python"):
            blocks.append(Block(section, fence.group(1), "\n".join(body) + "\n"))
    return blocks


def expectations(block: Block) -> list[str]:
    """The JSON each ``# -> ...`` comment (and the comment lines that continue it) shows."""
    found = []
    lines = block.code.splitlines()
    for i, line in enumerate(lines):
        head = re.match(r"\s*# -> (?:\d{3} )?(.*)", line)
        if head is None:
            continue
        text = head.group(1)
        for more in lines[i + 1 :]:
            if not re.match(r"#\s{2,}", more):
                break
            text += more.lstrip("# ")
        start, end = text.find("{"), text.rfind("}")
        if start >= 0 and "..." not in text:
            found.append(text[start : end + 1])
    if block.lang == "python":  # print(...)  # {'message': 'Hello, Ada'}
        found += re.findall(r"print\(.*\)\s+# (\{.*\})$", block.code, flags=re.M)
    return found


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@dataclass
class Served:
    api: str
    nats: str
    cwd: Path
    env: dict[str, str]
    seen: dict[str, str] = field(default_factory=dict)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = shutil.which("computebus", path=env["PATH"])
    argv = [command] if command else [sys.executable, "-m", "executor.cli"]
    proc = await asyncio.create_subprocess_exec(
        *argv, "serve", "--port", "0", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        fields = parse_ready_line(line.decode().strip())
        assert (tmp_path / ".computebus" / "nats").is_dir()  # the default data dir, relative
        async with httpx.AsyncClient(base_url=fields["api"]) as http:
            ready = (await http.get("/readyz")).json()
        assert ready["ready"] is True, ready
        forced = os.environ.get("COMPUTEBUS_ISOLATION", "auto")
        assert forced in ("auto", ready["isolation"]), ready  # a forced level is the level used
        env["COMPUTEBUS_API"] = fields["api"]
        # As after the first minute's `export TOKEN=...` (each block runs in a shell of its own).
        env["TOKEN"] = Path(fields["token-file"]).read_text().strip()
        yield Served(fields["api"], fields["nats"], tmp_path, env)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 60)


async def run_block(served: Served, block: Block) -> str:
    code = block.code.replace(README_API, served.api).replace(README_NATS, served.nats)
    code = code.replace(README_NATS_ADDRESS, _without_user(served.nats))
    for placeholder, value in served.seen.items():
        code = code.replace(placeholder, value)
    if block.lang == "sh":
        argv = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        argv = [sys.executable, "-c", code]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=served.cwd,
        env={**served.env, "API": served.api},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), BLOCK_TIMEOUT_S)
    output = out.decode()
    assert proc.returncode == 0, f"{block.section} block failed:\n{code}\n--- output ---\n{output}"
    return output


def _without_user(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


async def learn(served: Served, output: str) -> None:
    """The ids later blocks stand for with placeholders."""
    if README_SERVICE not in served.seen:
        auth = {"Authorization": f"Bearer {served.env['TOKEN']}"}
        async with httpx.AsyncClient(base_url=served.api, headers=auth) as http:
            found = await http.get("/compute/functions/demo/hello")
            if found.status_code == 200:
                served.seen[README_SERVICE] = found.json()["body"]["compute_asset"]["service"]
    ids = re.findall(r'"invocation_id":\s*"([0-9a-f]{32})"', output)
    if ids:
        served.seen[README_INVOCATION] = ids[-1]


async def test_the_readme_examples_run_as_written(served: Served) -> None:
    assert README_NATS in README.read_text(), "the NATS examples' placeholder changed"
    blocks = readme_blocks()
    assert {b.section for b in blocks} == set(SECTIONS), "a section lost its examples"
    checked = 0
    for block in blocks:
        output = await run_block(served, block)
        for expected in expectations(block):
            assert squeezed(expected) in squeezed(output), (
                f"{block.section}: expected {expected}\n--- output ---\n{output}"
            )
            checked += 1
        await learn(served, output)
    assert checked >= 8
