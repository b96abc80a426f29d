"""compose.yaml runs what ``computebus cluster`` runs (the same servers, roles, settings and
one data dir per worker), its nats-server configs are ones nats-server accepts, and, where
Debian's docker-compose is installed (CI installs it), the file is valid Compose."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bus.embedded import nats_server_binary
from executor.cluster import ClusterShape, role_env
from executor.nats_config import CLIENT_PORT, server_names, write_cluster_config
from executor.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if name.startswith(f"{kind}-")}


def test_the_topology_is_the_cluster_commands() -> None:
    shape = ClusterShape()
    nats = of_kind("nats")
    names = server_names(shape.servers)
    assert sorted(n for n in nats if n != "nats-config") == names
    for name in names:
        assert nats[name]["command"] == ["nats-server", "-c", f"/config/{name}.conf"]
    config_command = services()["nats-config"]["command"]
    assert config_command[:2] == ["computebus", "nats-config"]
    assert config_command[config_command.index("--servers") + 1] == str(shape.servers)
    assert len(of_kind("api")) == shape.apis
    assert len(of_kind("worker")) == shape.workers

    seeds = ",".join(f"nats://{name}:{CLIENT_PORT}" for name in names)
    settings = Settings()
    for kind, commands in (("api", ["computebus", "api"]), ("worker", ["computebus", "worker"])):
        wanted = role_env(kind, 1, seeds, shape, settings)
        for name, service in of_kind(kind).items():
            assert service["command"] == commands, name
            env = service["environment"]
            assert set(wanted) <= set(env), (name, set(wanted) - set(env))
            assert env["NATS_URL"] == seeds
            assert env["COMPUTEBUS_REPLICAS"] == str(shape.replicas)
            assert env["COMPUTEBUS_NATS_CREDENTIALS"] == "/config/nats-credentials.json"
    worker_state = [
        v for s in of_kind("worker").values() for v in s["volumes"] if v.endswith(":/state")
    ]
    assert len(set(worker_state)) == shape.workers  # a data dir of its own each


def test_the_servers_configs_are_valid(tmp_path: Path) -> None:
    written = write_cluster_config(tmp_path, server_names(ClusterShape().servers), Path("/data"))
    for path in written:
        checked = subprocess.run(
            [str(nats_server_binary()), "-c", str(path), "-t"], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    again = write_cluster_config(tmp_path, server_names(3), Path("/data"))
    assert [p.read_text() for p in again] == [p.read_text() for p in written]  # keeps secrets


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_accepts_the_file() -> None:
    checked = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
