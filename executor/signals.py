"""Signal handling in one place: the first SIGINT/SIGTERM sets the stop event, the second kills
what must not outlive us (the ``on_force`` hooks: the embedded nats-server, the worker) and
exits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger("computebus")

ForceHooks = list[Callable[[], None]]


def stop_on_signals(stop: asyncio.Event, role: str) -> ForceHooks:
    """Returns the hooks a second signal runs before exiting (append to it). ``role`` names
    the process in the log (serve passes its own signal on to its worker)."""
    loop = asyncio.get_running_loop()
    hooks: ForceHooks = []

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("%s: second %s: exiting now", role, signal.Signals(signum).name)
            for kill in hooks:
                with contextlib.suppress(Exception):
                    kill()
            os._exit(130)
        log.info("%s: %s: draining (again to exit at once)", role, signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    return hooks


def killer(pid: int, signum: signal.Signals) -> Callable[[], None]:
    """A hook that sends ``signum`` to the process ``pid`` (if it is still there)."""

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    return kill
