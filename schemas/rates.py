"""The bounds of a rate limit (``rps`` with ``burst``), shared by a function's ``limits`` and an
HTTP route's."""

from __future__ import annotations

from msgspec import UNSET, UnsetType

from schemas.errors import InvalidRequest, detail

MAX_RPS = 100_000.0
MIN_RPS = 0.01  # one call every 100 s


def check_rate(rps: float | UnsetType, burst: int | UnsetType, where: str) -> None:
    """Raise ``InvalidRequest`` naming ``<where>/rps`` or ``<where>/burst`` when out of range."""
    if rps is not UNSET and not MIN_RPS <= rps <= MAX_RPS:
        _bad(f"{where}/rps", f"must be {MIN_RPS:g} to {MAX_RPS:g}, got {rps:g}")
    if burst is not UNSET:
        if rps is UNSET:
            _bad(f"{where}/burst", "needs rps beside it")
        if not 1 <= burst <= MAX_RPS:
            _bad(f"{where}/burst", f"must be 1 to {MAX_RPS:g}, got {burst}")


def _bad(path: str, reason: str) -> None:
    raise InvalidRequest(f"{path}: {reason}", [detail(path, reason)])
