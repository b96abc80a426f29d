"""CPU used per call by each process of a system under test, read from /proc.

A stack is a process tree: every process under its root is counted by what it is (the API, a
worker, nats-server, a handler process under a worker), and the load generator (this process)
apart. Processes that exit during a phase take their CPU with them, so the phases measured are
the warm ones.
"""

from __future__ import annotations

import resource
from collections import defaultdict
from collections.abc import Mapping

from executor.bench.proc_tree import children, cmdline, cpu_seconds

LOAD = "load generator"


def _role(pid: int, under_worker: bool) -> str:
    words = cmdline(pid)
    if words and words[0].endswith("nats-server"):
        return "nats-server"
    if "executor.cli" in words:
        at = words.index("executor.cli") + 1
        verb = words[at] if at < len(words) else ""
        return {"worker": "worker", "api": "api", "serve": "api"}.get(verb, verb)
    return "handlers" if under_worker else "other"


def cpu_by_role(roots: Mapping[int, str | None]) -> dict[str, float]:
    """CPU seconds so far of each root process and everything under it, by role (a root's
    own role as given, or read from its command line), and of this process (the load)."""
    totals: defaultdict[str, float] = defaultdict(float)
    todo = [(pid, named or _role(pid, False)) for pid, named in roots.items()]
    while todo:
        pid, role = todo.pop()
        totals[role] += cpu_seconds(pid)
        under_worker = role in ("worker", "handlers")
        todo += [(kid, _role(kid, under_worker)) for kid in children(pid)]
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
