"""What one handler process may use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one handler process may use: memory, a writable workspace or not, the network."""

    memory_mb: int
    read_only_fs: bool = True
    network: bool = False
