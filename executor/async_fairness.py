"""How a worker shares its Async slots between functions with queued work.

Each function has its own consumer on the Async stream, so a flood of one function no longer
stands in front of another's messages. Free slots go one at a time to the function holding the
fewest (max-min fairness). One function never holds the last ``reserve`` slots: a run cannot be
taken back once started, so without them a function alone could fill every slot with calls that
hang, and a newcomer would wait for one of those to end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

K = TypeVar("K")


def reserve_for_others(slots: int) -> int:
    """Slots one function may never take: an eighth, at least one (none when there is one)."""
    return 0 if slots <= 1 else max(1, slots // 8)


def share_out(free: int, held: Mapping[K, int], waiting: Iterable[K], cap: int) -> dict[K, int]:
    """How many of ``free`` slots each waiting function gets now.

    ``held``: slots each function holds already; ``cap``: the most one function may hold.
    Ties go to the function listed first in ``waiting`` (the caller rotates it)."""
    holding = {key: held.get(key, 0) for key in waiting}
    granted: dict[K, int] = {}
    for _ in range(free):
        open_ = [key for key, n in holding.items() if n < cap]
        if not open_:
            break
        key = min(open_, key=lambda k: holding[k])
        holding[key] += 1
        granted[key] = granted.get(key, 0) + 1
    return granted
