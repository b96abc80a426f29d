"""The first token: an API that starts on a bus with no tokens makes an admin token and writes it
to ``<data-dir>/admin-token`` (mode 0600), where the CLI on the same machine finds it. The token
itself is never logged; where it is, is."""

from __future__ import annotations

import logging
from pathlib import Path

from bus.embedded import write_private
from bus.tokens import TokenStore
from schemas.tokens import ADMIN, ADMIN_TOKEN_FILE

log = logging.getLogger("computebus.access")


def admin_token_path(data_dir: Path) -> Path:
    return data_dir / ADMIN_TOKEN_FILE


async def ensure_admin_token(tokens: TokenStore, data_dir: Path) -> Path | None:
    """Make the first admin token if the bus has none; the file that holds one, if any."""
    path = admin_token_path(data_dir)
    if tokens.all():
        return path if path.exists() else None
    created = await tokens.issue("admin (first start)", [ADMIN], None)
    data_dir.mkdir(parents=True, exist_ok=True)
    write_private(path, created.token + "\n")
    log.info("made the first admin token (id %s), written to %s", created.id, path)
    return path
