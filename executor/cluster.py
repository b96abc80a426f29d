"""``computebus cluster``: on one machine, N nats-servers routed into one JetStream cluster, M
``computebus api`` and K ``computebus worker`` processes, each worker with a data dir of its
own (as if on a machine of its own: bundles come from the object store). For trying scale-out
and for the tests; ``compose.yaml`` runs the same topology in containers."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.connect import connect
from bus.embedded_cluster import EmbeddedCluster, start_embedded_cluster
from bus.workers import ping_workers
from executor.api.admin_token import admin_token_path
from executor.serve import spawn_role, stop_role
from executor.settings import Settings
from executor.signals import ForceHooks, killer
from schemas.errors import SetupError

log = logging.getLogger("computebus")
READY = "computebus cluster ready"
ROLE_READY_S = 60.0
MAX_REPLICAS = 3  # JetStream's own advice: more copies cost writes and add little


class ClusterFailed(SetupError):
    """A server or a role of the cluster did not start."""


@dataclass(frozen=True)
class ClusterShape:
    servers: int = 3
    apis: int = 2
    workers: int = 2
    nats_port: int = 0  # the first server's client port (0: free ports)

    @property
    def replicas(self) -> int:
        return min(MAX_REPLICAS, self.servers)


@dataclass
class Roles:
    """The role processes this command started, by name (``api-1``, ``worker-2``, ...)."""

    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    echoes: set[asyncio.Task[None]] = field(default_factory=set)  # their stdout, passed on

    async def stop(self, drain_s: float) -> None:
        await asyncio.gather(*(stop_role(p, drain_s) for p in self.processes.values()))


def role_env(
    role: str, index: int, cluster_url: str, shape: ClusterShape, settings: Settings
) -> dict[str, str]:
    """What a role process of the cluster is started with (compose.yaml sets the same)."""
    data_dir = settings.data_dir if role == "api" else settings.data_dir / f"worker-{index}"
    env = {
        "NATS_URL": cluster_url,
        "COMPUTEBUS_DATA_DIR": str(data_dir),
        "COMPUTEBUS_REPLICAS": str(shape.replicas),
    }
    if role == "api":
        env["COMPUTEBUS_HOST"] = settings.host
        env["COMPUTEBUS_PORT"] = str(settings.port + index - 1 if settings.port else 0)
    elif settings.worker_metrics_port is not None:  # one port each, counting up from the given
        first = settings.worker_metrics_port
        env["COMPUTEBUS_WORKER_METRICS_PORT"] = str(first + index - 1 if first else 0)
    return env


async def run_cluster(
    shape: ClusterShape, settings: Settings, stop: asyncio.Event, on_force: ForceHooks
) -> int:
    cluster = await start_embedded_cluster(
        settings.data_dir / "nats", shape.servers, base_port=shape.nats_port
    )
    for server in cluster.servers.values():
        on_force.append(killer(server.process.pid, signal.SIGTERM))
    roles = Roles()
    try:
        apis = [await _start_api(1, cluster, shape, settings, roles, on_force)]
        apis += await asyncio.gather(
            *(
                _start_api(i, cluster, shape, settings, roles, on_force)
                for i in range(2, shape.apis + 1)
            )
        )
        for i in range(1, shape.workers + 1):
            env = role_env("worker", i, cluster.url("worker"), shape, settings)
            roles.processes[f"worker-{i}"] = process = await spawn_role("worker", env)
            on_force.insert(0, killer(process.pid, signal.SIGKILL))
        await _wait_for_workers(cluster, shape.workers, roles)
        token_file = admin_token_path(settings.data_dir).resolve()
        print(ready_line(apis, cluster.url("client"), token_file), flush=True)
        await _until_stop_or_exit(stop, roles)
        return 0
    finally:
        await roles.stop(settings.drain_s)
        await cluster.stop()
        on_force.clear()


def ready_line(apis: list[str], nats: str, token_file: Path) -> str:
    return f"{READY} api={','.join(apis)} nats={nats} token-file={token_file}"


async def _start_api(
    index: int,
    cluster: EmbeddedCluster,
    shape: ClusterShape,
    settings: Settings,
    roles: Roles,
    on_force: ForceHooks,
) -> str:
    env = role_env("api", index, cluster.url("api"), shape, settings)
    process = await spawn_role("api", env, stdout=asyncio.subprocess.PIPE)
    roles.processes[f"api-{index}"] = process
    on_force.insert(0, killer(process.pid, signal.SIGKILL))
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), ROLE_READY_S)
    except TimeoutError:
        raise ClusterFailed(f"api-{index} did not become ready in {ROLE_READY_S:g}s") from None
    if not line.startswith(b"computebus api ready api="):
        raise ClusterFailed(f"api-{index} exited at start-up (code {await process.wait()})")
    echo = asyncio.get_running_loop().create_task(_pass_through(process.stdout))
    roles.echoes.add(echo)
    echo.add_done_callback(roles.echoes.discard)
    return line.decode().strip().rpartition("=")[2]


async def _wait_for_workers(cluster: EmbeddedCluster, count: int, roles: Roles) -> None:
    nc = await connect(cluster.url("computebus"), name="computebus-cluster")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROLE_READY_S
        while len(await ping_workers(nc)) < count:
            for name, process in roles.processes.items():
                if process.returncode is not None:
                    raise ClusterFailed(f"{name} exited with code {process.returncode}")
            if loop.time() > deadline:
                raise ClusterFailed(f"fewer than {count} workers ready in {ROLE_READY_S:g}s")
    finally:
        await nc.close()


async def _until_stop_or_exit(stop: asyncio.Event, roles: Roles) -> None:
    """Wait for Ctrl-C; a role that dies meanwhile is logged (the others go on)."""
    waits: dict[asyncio.Future[Any], str] = {
        asyncio.ensure_future(p.wait()): name for name, p in roles.processes.items()
    }
    pending: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait()), *waits}
    while not stop.is_set():
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in waits:
                log.warning("%s exited with code %s", waits[task], task.result())
    for task in pending:
        task.cancel()


async def _pass_through(stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        sys.stdout.write(line.decode(errors="replace"))
