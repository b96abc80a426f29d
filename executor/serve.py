"""``computebus serve``: an embedded nats-server, a worker process and the API, drained together."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import nats.errors

from bus import subjects
from bus.connect import connect, redact
from bus.embedded import EmbeddedNats, start_embedded_nats
from executor.api.admin_token import admin_token_path
from executor.api.server import run_api
from executor.settings import Settings
from executor.signals import ForceHooks, killer
from schemas.errors import SetupError


class RoleFailed(SetupError):
    """nats-server or the worker did not start, or the port is taken."""


log = logging.getLogger("computebus")
WORKER_READY_S = 60.0
_PR_SET_PDEATHSIG = 1


READY = "computebus ready"


def ready_line(api: str, nats: str, token_file: Path | None = None) -> str:
    """The one line ``serve`` prints when it takes work (where the admin token is, never the
    token itself)."""
    line = f"{READY} api={api} nats={nats}"
    return f"{line} token-file={token_file}" if token_file is not None else line


def parse_ready_line(line: str) -> dict[str, str]:
    """``{"api": ..., "nats": ...}`` from a ready line (what scripts and tests read)."""
    if not line.startswith(READY + " "):
        raise ValueError(f"not a ready line: {line!r}")
    return dict(part.split("=", 1) for part in line[len(READY) :].split())


def ensure_port_free(host: str, port: int) -> None:
    """Refuse at once when the HTTP port is taken, before anything is started for nothing."""
    if port == 0:
        return
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise RoleFailed(
            f"cannot listen on {host}:{port}: {reason} (is another computebus running? "
            "choose another with --port or COMPUTEBUS_PORT, 0 picks a free one)"
        ) from None


def _die_with_parent() -> None:
    """Runs in the worker child before exec: if serve is killed outright, the worker goes too."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def spawn_role(
    role: str, env: dict[str, str], stdout: int | None = None
) -> asyncio.subprocess.Process:
    """``computebus <role>`` as a child: its own session (a terminal Ctrl-C reaches only us,
    and we drain the children in order), and gone with us if we are killed outright."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "executor.cli",
        role,
        env={**os.environ, **env},
        stdout=stdout,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


async def stop_role(process: asyncio.subprocess.Process, drain_s: float) -> None:
    """SIGTERM (it drains), then SIGKILL if it has not exited ``drain_s`` + 5 s later."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), drain_s + 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def _wait_for_worker(url: str, worker: asyncio.subprocess.Process) -> None:
    nc = await connect(url, name="computebus-serve")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WORKER_READY_S
        while loop.time() < deadline:
            if worker.returncode is not None:
                raise RoleFailed(f"the worker exited with code {worker.returncode} at start-up")
            try:
                await nc.request(subjects.WORKER_PING, b"", timeout=0.5)
                return
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.1)
        raise RoleFailed("the worker did not become ready in time")
    finally:
        await nc.close()


async def serve(settings: Settings, stop: asyncio.Event, on_force: ForceHooks) -> int:
    """``on_force``: what a second Ctrl-C runs before it exits; the children go with it."""
    embedded: EmbeddedNats | None = None
    given = settings.nats_url
    if given:
        urls = {"api": given, "worker": given, "client": given}
    else:
        embedded = await start_embedded_nats(settings.data_dir / "nats")
        on_force.append(killer(embedded.process.pid, signal.SIGTERM))
        urls = embedded.urls  # each role its own user; the client's is the one printed
    log.info(
        "serve: %s nats-server at %s; data in %s",
        "an existing" if given else "an embedded",
        redact(urls["client"]),
        settings.data_dir.resolve(),
    )
    worker: asyncio.subprocess.Process | None = None
    try:
        env = {"NATS_URL": urls["worker"], "COMPUTEBUS_DATA_DIR": str(settings.data_dir)}
        worker = await spawn_role("worker", env)
        on_force.insert(0, killer(worker.pid, signal.SIGKILL))
        await _wait_for_worker(urls["api"], worker)

        def ready(api_url: str) -> None:
            token_file = admin_token_path(settings.data_dir).resolve()
            shown = token_file if token_file.exists() else None
            print(ready_line(api_url, urls["client"], shown), flush=True)

        await run_api(urls["api"], settings, stop, on_ready=ready)
        return 0
    finally:
        began = time.monotonic()
        if worker is not None:
            await stop_role(worker, settings.drain_s)
        if embedded is not None:
            await embedded.stop()
        on_force.clear()  # their pids may be someone else's by now
        code = worker.returncode if worker is not None else None
        log.info(
            "serve stopped: worker exited with %s, %s in %.2f s",
            code,
            "nats-server stopped" if embedded is not None else "NATS left running",
            time.monotonic() - began,
        )
