"""One real cluster for the session, started by ``computebus cluster``: three nats-servers from
the wheel on loopback, two APIs and two workers, each worker with its own data dir."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from nats.js.api import StreamConfig

from bus.connect import connect, with_credentials
from bus.embedded import CONFIG_FILE, CREDENTIALS_FILE, nats_server_binary
from executor.cluster import READY
from executor.serve import spawn_role
from tests.helpers import descendants

# Short enough that the fault tests wait out an Async ack wait in seconds.
ACK_WAIT_S = 3


@dataclass
class Cluster:
    process: asyncio.subprocess.Process
    data_dir: Path
    apis: list[str]
    client_url: str
    token: str
    # Processes the tests started beside the cluster's (servers brought back, replacement
    # roles), stopped when the session ends.
    restarted: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The operator's seed list (everything), for checks the roles' users may not make."""
        return self.role_url("computebus")

    def role_url(self, role: str) -> str:
        """The seed list of every server with ``role``'s credentials."""
        credentials = self.data_dir / "nats" / CREDENTIALS_FILE
        password = json.loads(credentials.read_text())["users"][role]
        return with_credentials(self.client_url, role, password)

    async def start_role(
        self, role: str, data_dir: Path, *, keep: bool = False
    ) -> asyncio.subprocess.Process:
        """Another ``computebus <role>`` on the cluster (as a user would add one); with
        ``keep`` it serves the later tests too and is stopped when the session ends."""
        env = {
            "NATS_URL": self.role_url(role),
            "COMPUTEBUS_DATA_DIR": str(data_dir),
            "COMPUTEBUS_REPLICAS": "3",
            "COMPUTEBUS_PORT": "0",
            "COMPUTEBUS_LOG_LEVEL": "WARNING",
        }
        stdout = asyncio.subprocess.PIPE if role == "api" else None
        process = await spawn_role(role, env, stdout=stdout)
        if keep:
            self.restarted.append(process)
        return process

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def server_url(self, name: str) -> str:
        """The operator's URL of the one server ``name`` (n1, n2, ...), without the others."""
        seeds = self.client_url.rpartition("@")[2].split(",")
        address = seeds[int(name[1:]) - 1].removeprefix("nats://")
        return f"{self.url.rpartition('@')[0]}@{address}"

    def server_pid(self, name: str) -> int:
        ports = list((self.data_dir / "nats" / name).glob("*.ports"))
        pids = [int(p.stem.rpartition("_")[2]) for p in ports]
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        assert len(alive) == 1, (name, pids)
        return alive[0]

    def kill_server(self, name: str) -> None:
        pid = self.server_pid(name)
        os.kill(pid, signal.SIGKILL)
        for path in (self.data_dir / "nats" / name).glob(f"*_{pid}.ports"):
            path.unlink()

    async def restart_server(self, name: str) -> None:
        """Start a killed server again on its store and config (it rejoins the cluster)."""
        process = await asyncio.create_subprocess_exec(
            str(nats_server_binary()),
            "-c",
            str(self.data_dir / "nats" / name / CONFIG_FILE),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.restarted.append(process)
        await self.wait_healthy()

    async def wait_healthy(self, within_s: float = 60) -> None:
        """Until JetStream can make (and remove) a stream of three replicas again."""
        nc = await connect(self.url, name="test-health")
        try:
            js = nc.jetstream(timeout=5)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within_s
            while True:
                name = f"HEALTH_{uuid.uuid4().hex[:8]}"
                try:
                    await js.add_stream(StreamConfig(name=name, subjects=[name], num_replicas=3))
                    await js.delete_stream(name)
                    return
                except Exception:
                    assert loop.time() < deadline, "the cluster did not recover"
                    await asyncio.sleep(0.5)
        finally:
            await nc.close()

    def worker_pids(self) -> list[int]:
        found = []
        for pid in descendants(self.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"executor.cli" in cmdline and b"worker" in cmdline:
                found.append(pid)
        return sorted(found)


@pytest_asyncio.fixture(scope="session")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "COMPUTEBUS_ASYNC_ACK_WAIT_S": str(ACK_WAIT_S)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "executor.cli",
        "cluster",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    restarted: list[asyncio.subprocess.Process] = []
    try:
        assert process.stdout is not None
        line = ""
        while not line.startswith(READY):
            raw = await asyncio.wait_for(process.stdout.readline(), 120)
            assert raw, "computebus cluster exited before it was ready"
            line = raw.decode().strip()
        fields = dict(part.split("=", 1) for part in line[len(READY) :].split())
        drain = asyncio.create_task(_read_all(process.stdout))
        token = Path(fields["token-file"]).read_text().strip()
        found = Cluster(process, data_dir, fields["api"].split(","), fields["nats"], token)
        restarted = found.restarted
        yield found
        drain.cancel()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), 90)
        for started in restarted:
            if started.returncode is None:
                started.terminate()
                await asyncio.wait_for(started.wait(), 60)


async def _read_all(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


@pytest_asyncio.fixture
async def apis(cluster: Cluster) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = [
        httpx.AsyncClient(base_url=api, headers=cluster.auth, timeout=60) for api in cluster.apis
    ]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()
