"""The one background task set: failures are logged, draining cancels what is late."""

from __future__ import annotations

import asyncio
import logging

import pytest

from executor.tasks import TaskSet


async def test_a_failing_task_is_logged_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("chore")

    async def boom() -> None:
        raise ValueError("lost for ever before")

    with caplog.at_level(logging.ERROR, logger="computebus"):
        tasks.spawn(boom())
        await tasks.wait()
        await asyncio.sleep(0)
    assert "chore task failed" in caplog.text and "lost for ever before" in caplog.text
    assert len(tasks) == 0


async def test_drain_lets_quick_tasks_finish_and_cancels_late_ones() -> None:
    tasks = TaskSet("chore")
    finished: list[str] = []

    async def take(seconds: float, name: str) -> None:
        await asyncio.sleep(seconds)
        finished.append(name)

    quick = tasks.spawn(take(0.01, "quick"))
    slow = tasks.spawn(take(60, "slow"))
    await tasks.drain(0.5)
    assert finished == ["quick"] and quick.done() and slow.cancelled()
    assert len(tasks) == 0
