"""How a worker shares its Async slots between functions with queued work.

Each function has its own consumer on the Async stream, so a flood of one function no longer
stands in front of another's messages. Free slots go one at a time to the function holding the
fewest (max-min fairness). The last ``reserve`` slots only go to functions holding none: a run
cannot be taken back once started, so without them one or a few functions could fill every slot
with calls that hang, and a newcomer would wait for one of those to end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

K = TypeVar("K")


def reserve_for_newcomers(slots: int) -> int:
    """Slots kept for functions holding none: an eighth, at least one (none when there is one)."""
    return 0 if slots <= 1 else max(1, slots // 8)


def share_out(free: int, held: Mapping[K, int], waiting: Iterable[K], slots: int) -> dict[K, int]:
    """How many of ``free`` slots each waiting function gets now.

    ``held``: what every function holds already (``slots - free`` in all). Ties go to the
    function listed first in ``waiting`` (the caller rotates it)."""
    busy_limit = slots - reserve_for_newcomers(slots)
    total = slots - free
    holding = {key: held.get(key, 0) for key in waiting}
    granted: dict[K, int] = {}
    while total < slots and holding:
        key = min(holding, key=lambda k: holding[k])
        if holding[key] > 0 and total >= busy_limit:
            break  # the rest is for functions holding none, and none is waiting
        holding[key] += 1
        granted[key] = granted.get(key, 0) + 1
        total += 1
    return granted
