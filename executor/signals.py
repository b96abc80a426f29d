"""Signal handling in one place: the first SIGINT/SIGTERM sets the stop event, the second exits."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

log = logging.getLogger("computebus")


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(130)
        log.info("%s: draining", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
