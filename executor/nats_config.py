"""``computebus nats-config``: the configs of a cluster of nats-servers that computebus runs on,
for servers computebus does not start itself (``compose.yaml``'s). It writes one config per
server, the users' credentials and the auth callout's key; the roles read the credentials
(``COMPUTEBUS_NATS_CREDENTIALS``), so no password is ever spelt in compose.yaml. Running it again
keeps the credentials and the key."""

from __future__ import annotations

from pathlib import Path

from bus.embedded import (
    CALLOUT_SEED_FILE,
    CREDENTIALS_FILE,
    MAX_PAYLOAD,
    Peering,
    load_or_create_credentials,
    load_or_create_seed,
    render_config,
    write_private,
)
from bus.nats_jwt import public_key

CLIENT_PORT = 4222
ROUTE_PORT = 6222
MONITOR_PORT = 8222  # nats-server's /healthz, for the containers' health checks


def server_names(count: int, pattern: str = "nats-{}") -> list[str]:
    return [pattern.format(i) for i in range(1, count + 1)]


def write_cluster_config(out: Path, names: list[str], store_dir: Path) -> list[Path]:
    """``<out>/<name>.conf`` for each server (listening on every address, routes to the others
    by name), beside the shared credentials and callout key; the paths of the configs."""
    out.mkdir(parents=True, exist_ok=True)
    passwords = load_or_create_credentials(out / CREDENTIALS_FILE)
    issuer = public_key(load_or_create_seed(out / CALLOUT_SEED_FILE))
    routes = tuple(f"nats://{name}:{ROUTE_PORT}" for name in names)
    written = []
    for name in names:
        config = render_config(
            store_dir,
            "0.0.0.0",
            CLIENT_PORT,
            MAX_PAYLOAD,
            passwords,
            issuer,
            Peering(name, ROUTE_PORT, routes),
            ports_file=False,
            monitor_port=MONITOR_PORT,
        )
        path = out / f"{name}.conf"
        write_private(path, config)
        written.append(path)
    return written
