"""CPU used per call by each process of a system under test, read from /proc.

A stack is a process tree: every process under its root is counted by what it is (the API, a
worker, nats-server, a handler process under a worker), and the load generator (this process)
apart. Processes that exit during a phase take their CPU with them, so the phases measured are
the warm ones.
"""

from __future__ import annotations

import os
import resource
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

_PROC = Path("/proc")
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
LOAD = "load generator"


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process, or None once it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return int(fields[1]), (int(fields[11]) + int(fields[12])) * _TICK_S


def _role(pid: int, under_worker: bool, named: str | None = None) -> str:
    if named is not None:
        return named
    try:
        argv = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv]
    if any(w.endswith("nats-server") for w in words[:1]):
        return "nats-server"
    if "executor.cli" in words:
        verb = words[words.index("executor.cli") + 1] if len(words) > 2 else ""
        return {"worker": "worker", "api": "api", "serve": "api"}.get(verb, verb)
    return "handlers" if under_worker else "other"


def cpu_by_role(roots: Mapping[int, str | None]) -> dict[str, float]:
    """CPU seconds so far of each root process and everything under it, by role (a root's
    own role as given, or read from its command line), and of this process (the load)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], cpu[int(entry.name)] = found
    roles: dict[int, str | None] = {}

    def role_of(pid: int) -> str | None:
        """The role of a process in one of the trees, or None for one outside them."""
        if pid not in roles:
            if pid in roots:
                roles[pid] = _role(pid, False, roots[pid])
            elif (parent := parents.get(pid, 0)) <= 1 or (above := role_of(parent)) is None:
                roles[pid] = None
            else:
                roles[pid] = _role(pid, above in ("worker", "handlers"))
        return roles[pid]

    totals: defaultdict[str, float] = defaultdict(float)
    for pid, seconds in cpu.items():
        if (role := role_of(pid)) is not None:
            totals[role] += seconds
    usage = resource.getrusage(resource.RUSAGE_SELF)
    totals[LOAD] += usage.ru_utime + usage.ru_stime
    return dict(totals)


def per_call_us(before: dict[str, float], after: dict[str, float], calls: int) -> dict[str, float]:
    """Microseconds of CPU per call, by role, from two readings ``calls`` calls apart (the
    kernel counts in clock ticks: a process that used less than one reads 0)."""
    if calls <= 0:
        return {}
    return {
        role: round((after[role] - before.get(role, 0.0)) / calls * 1e6, 1)
        for role in sorted(after, key=lambda r: (r == LOAD, r))
    }
