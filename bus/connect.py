"""One way to open a NATS connection for a long-running computebus process."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from nats.aio.client import Client

from bus import nats_headers

log = logging.getLogger("computebus.bus")
nats_headers.install()

# Publishes buffer client-side while reconnecting; room for several 8 MiB payloads.
PENDING_SIZE = 64 * 1024 * 1024


async def connect(
    url: str,
    *,
    name: str,
    first_connect_timeout: float | None = 30,
    inbox_prefix: str | None = None,
) -> Client:
    """Connect with retry-forever reconnects and callbacks that log instead of printing.

    nats-py applies `max_reconnect_attempts=-1` to the very first connect too, so a wrong
    URL or password would retry silently forever; `first_connect_timeout` bounds that
    (None waits forever) and raises ConnectionError naming the last failure.
    """
    safe = redact(url)
    nc = Client()
    established = False

    async def on_error(exc: Exception) -> None:
        # Failed attempts repeat every 0.25 s: before the first connect the raised
        # ConnectionError reports them, after it disconnected_cb has already warned.
        quiet = not established or nc.is_reconnecting
        level = logging.DEBUG if quiet else logging.WARNING
        log.log(level, "nats %s (%s): %s: %s", name, safe, type(exc).__name__, exc)

    async def on_disconnected() -> None:
        if established and not (nc.is_closed or nc.is_draining):  # not our own close or drain
            log.warning("nats %s disconnected from %s", name, safe)

    async def on_reconnected() -> None:
        log.info("nats %s reconnected to %s", name, safe)

    async def on_closed() -> None:
        log.debug("nats %s connection closed", name)

    # reconnect_time_wait is annotated int in nats-py but a float works.
    options: dict[str, Any] = {
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": 5,
        "pending_size": PENDING_SIZE,
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
        "closed_cb": on_closed,
    }
    if inbox_prefix is not None:
        options["inbox_prefix"] = inbox_prefix
    servers, credentials = seed_servers(url)
    options.update(credentials)
    try:
        await asyncio.wait_for(nc.connect(servers, **options), first_connect_timeout)
    except TimeoutError:
        last = nc.last_error
        await nc.close()
        raise ConnectionError(
            f"could not connect to NATS at {safe} within {first_connect_timeout:g}s"
            + (f": {type(last).__name__}: {last}" if last else "")
        ) from None
    except BaseException:
        await nc.close()
        raise
    established = True
    return nc


def seed_servers(url: str) -> tuple[list[str], dict[str, str]]:
    """A comma-separated list of seed URLs as nats-py's servers, and the credentials of the
    first URL that has any, given as options: nats-py applies those to every server, also the
    ones it learns of later, where a URL's own user and password stay with that URL (a role
    given one seed of a cluster could not fail over to the others: "Authorization Violation")."""
    servers: list[str] = []
    credentials: dict[str, str] = {}
    for part in (p.strip() for p in url.split(",")):
        if not part:
            continue
        parts = urlsplit(part if "://" in part else f"nats://{part}")
        userinfo, at, hostinfo = parts.netloc.rpartition("@")
        if at and not credentials:
            user, colon, password = userinfo.partition(":")
            if colon:
                credentials = {"user": unquote(user), "password": unquote(password)}
            else:
                credentials = {"token": unquote(user)}
        servers.append(urlunsplit(parts._replace(netloc=hostinfo)))
    return servers, credentials


def with_credentials(url: str, user: str, password: str) -> str:
    """``url`` (one server or a seed list) with ``user`` and ``password`` on its first server,
    which ``connect`` applies to every server."""
    servers, _ = seed_servers(url)
    scheme, _, rest = servers[0].partition("://")
    first = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"
    return ",".join([first, *servers[1:]])


def redact(url: str) -> str:
    """The URL with its password (or token) replaced by `***`, for logs; also comma lists."""
    return ",".join(_redact_one(part) for part in url.split(","))


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<unparseable url>"
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    # Without a colon the userinfo is a token, a secret in itself.
    hidden = f"{user}:***" if colon else "***"
    return urlunsplit(parts._replace(netloc=f"{hidden}@{hostinfo}"))
