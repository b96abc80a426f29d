"""What the benches read from /proc: a process's children and descendants, its command line,
its CPU so far, its resident memory (VmRSS, and PSS). A process that is gone reads as empty or
zero."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
HANDLER_RUNTIMES = {"node": "nodejs", "python": "python"}  # interpreter name prefix -> runtime


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children(child))
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def rss_kib(pid: int) -> int:
    return _kib(pid, "status", "VmRSS:")


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages counted once across the processes that share them."""
    return _kib(pid, "smaps_rollup", "Pss:")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of the process so far, all its threads included."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def _kib(pid: int, name: str, key: str) -> int:
    """A ``key: <n> kB`` line of /proc/<pid>/<name>."""
    try:
        text = (PROC / str(pid) / name).read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def child_running(pid: int, *words: str) -> int | None:
    """The first child of ``pid`` whose command line holds all of ``words`` (a role of serve)."""
    for child in children(pid):
        line = cmdline(child)
        if all(any(word in part for part in line) for word in words):
            return child
    return None


def handler_processes(worker_pid: int) -> dict[str, list[int]]:
    """The interpreters under a worker (each a warm handler process, inside its sandbox's
    bwrap), by runtime."""
    found: dict[str, list[int]] = {runtime: [] for runtime in HANDLER_RUNTIMES.values()}
    for pid in descendants(worker_pid):
        line = cmdline(pid)
        if not line:
            continue
        name = os.path.basename(line[0])
        for prefix, runtime in HANDLER_RUNTIMES.items():
            if name.startswith(prefix):
                found[runtime].append(pid)
    return found
