"""``stop_tasks``: loops that see their stop event finish their round; a cancellation a
task loses (as Python 3.11's ``wait_for`` can) is repeated until the task ends."""

from __future__ import annotations

import asyncio

import pytest

from watchllm_shared.stopping import sleep_unless, stop_tasks

pytestmark = pytest.mark.unit


async def test_a_loop_that_sees_its_stop_event_finishes_its_round() -> None:
    stopping = asyncio.Event()
    rounds: list[str] = []

    async def loop() -> None:
        while not stopping.is_set():
            rounds.append("read")
            await asyncio.sleep(0)
            rounds.append("acked")

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    stopping.set()
    await stop_tasks([task], grace_seconds=30)
    assert task.done() and not task.cancelled()
    assert rounds[-1] == "acked"


async def test_a_task_that_loses_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what wait_for does when its operation just completed

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await stop_tasks([task], grace_seconds=0)
    assert task.cancelled() and swallowed == 1


async def test_sleep_unless_ends_when_stopping_is_set() -> None:
    stopping = asyncio.Event()
    sleeper = asyncio.create_task(sleep_unless(stopping, 3600))
    await asyncio.sleep(0)
    stopping.set()
    await asyncio.wait_for(sleeper, 30)
