"""A real headless Chromium for the console's tests: Debian's ``chromium`` package, driven by
Playwright for Python (``executable_path``; Playwright's own browser downloads are never used).

The flags keep Chromium off the network it would otherwise reach for at start (updates, sync,
field trials): the machines we test on have none, and refused connections slow it down.
Screenshots go to ``COMPUTEBUS_TEST_ARTIFACTS`` (default ``test-artifacts/console`` under the
current directory), which CI keeps.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

_FLAGS = [
    "--no-sandbox",  # the tests run as root, where Chromium's own sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium; without one the test is skipped, except in CI, where it fails."""
    found = os.environ.get("COMPUTEBUS_TEST_CHROMIUM") or shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium on the PATH; .ci/run installs Debian's chromium package")
        pytest.skip("no chromium on the PATH (apt-get install chromium)")
    return found


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("COMPUTEBUS_TEST_ARTIFACTS", "test-artifacts/console"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class ConsoleErrors:
    """Every console error and uncaught exception a page raised; a test asserts there are none."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.seen.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(message.text)
