"""Several embedded nats-servers on one machine, routed into one JetStream cluster: for trying
scale-out and for the tests. Each server has its own store (``<data-dir>/n1``, ``n2``, ...); they
share the credentials and the callout's key (``<data-dir>``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from pathlib import Path

from bus.connect import with_credentials
from bus.embedded import (
    CLUSTER_READY_TIMEOUT,
    CREDENTIALS_FILE,
    EmbeddedNats,
    NatsServerFailed,
    Peering,
    callout_keys_beside,
    load_or_create_credentials,
    start_embedded_nats,
    store_keys,
)

SERVER_NAME = "n{}"  # n1, n2, ...


@dataclass(frozen=True)
class ServerPlan:
    """Where one server of the cluster listens, and what it is called."""

    name: str
    port: int
    route_port: int


def cluster_plan(size: int, base_port: int = 0, host: str = "127.0.0.1") -> list[ServerPlan]:
    """``size`` servers: clients on ``base_port`` and up, routes on ``base_port + 2000`` and up
    (nats-server's own 4222 and 6222); free ports when ``base_port`` is 0."""
    if size < 2:  # one server would wait for ever for the routes to peers it does not have
        raise NatsServerFailed(
            f"a cluster needs at least two servers (three to survive losing one), not {size}; "
            "for one server use `computebus serve`"
        )
    if base_port:
        return [
            ServerPlan(SERVER_NAME.format(i + 1), base_port + i, base_port + 2000 + i)
            for i in range(size)
        ]
    ports = _free_ports(host, 2 * size)
    return [
        ServerPlan(SERVER_NAME.format(i + 1), ports[2 * i], ports[2 * i + 1]) for i in range(size)
    ]


@dataclass
class EmbeddedCluster:
    data_dir: Path
    host: str
    plan: list[ServerPlan]
    servers: dict[str, EmbeddedNats] = field(default_factory=dict)  # by name, the running ones

    def url(self, role: str = "computebus") -> str:
        """A seed list of every server, ``role``'s credentials on the first (``connect``
        applies them to all)."""
        seeds = ",".join(f"nats://{self.host}:{server.port}" for server in self.plan)
        password = load_or_create_credentials(self.data_dir / CREDENTIALS_FILE)[role]
        return with_credentials(seeds, role, password)

    async def start_server(self, name: str) -> EmbeddedNats:
        """Start (or start again, on its store) the server ``name``."""
        plan = next(p for p in self.plan if p.name == name)
        routes = tuple(f"nats://{self.host}:{p.route_port}" for p in self.plan)
        server = await start_embedded_nats(
            self.data_dir / name,
            host=self.host,
            port=plan.port,
            peering=Peering(name, plan.route_port, routes),
            secrets_dir=self.data_dir,
        )
        self.servers[name] = server
        return server

    async def kill(self, name: str) -> None:
        """kill -9 one server (for fault tests); its store stays."""
        server = self.servers.pop(name)
        with contextlib.suppress(ProcessLookupError):
            server.process.kill()
        await server.process.wait()

    async def stop(self) -> None:
        servers, self.servers = list(self.servers.values()), {}
        await asyncio.gather(*(server.stop() for server in servers), return_exceptions=True)


async def start_embedded_cluster(
    data_dir: Path, size: int = 3, *, host: str = "127.0.0.1", base_port: int = 0
) -> EmbeddedCluster:
    """Start every server at once (JetStream needs a quorum to answer); return when each does."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster = EmbeddedCluster(data_dir, host, cluster_plan(size, base_port, host))
    # Each start reads (the first: makes) the shared credentials before its first await.
    started = await asyncio.gather(
        *(cluster.start_server(p.name) for p in cluster.plan), return_exceptions=True
    )
    failed = [r for r in started if isinstance(r, BaseException)]
    try:
        if failed:
            raise failed[0]
        keys = callout_keys_beside(data_dir / CREDENTIALS_FILE)
        assert keys is not None
        await store_keys(cluster.url(), keys, within_s=CLUSTER_READY_TIMEOUT)
    except BaseException:
        await cluster.stop()
        raise
    return cluster


def _free_ports(host: str, count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
