"""``Deadline``: fires on time when the awaited thing is late, never because the event
loop itself was busy past the deadline while the answer was already there."""

from __future__ import annotations

import asyncio
import time

import pytest

from watchllm_shared.deadline import Deadline

pytestmark = pytest.mark.unit


async def test_fires_on_time_when_nothing_answers() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with Deadline(0.05):
            await never
    assert 0.045 <= time.monotonic() - started < 0.5


async def test_an_answer_in_time_passes_through_untouched() -> None:
    async with Deadline(1.0):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)  # the timer was cancelled: nothing fires later


async def test_a_busy_loop_past_the_deadline_does_not_discard_a_ready_answer() -> None:
    """The loop is blocked for 200 ms, past the 50 ms deadline, and the answer came in
    at 10 ms meanwhile. asyncio.timeout cancels here although the answer is in; Deadline
    notices its timer ran late and lets the answer through.

    The order is built, not timed: the answer is scheduled from inside the blocking
    callback, due before the deadline, so however late the loop gets to either of them
    (a slow or preempted machine), both are due together and the deadline's timer runs
    first, as it does when a reply waits in the socket of a busy loop."""
    loop = asyncio.get_running_loop()

    async def answer_while_the_loop_is_blocked(guard: object) -> str:
        reply: asyncio.Future[str] = loop.create_future()
        began = loop.time()

        def someone_elses_slow_callback() -> None:
            time.sleep(0.2)
            loop.call_at(began + 0.01, reply.set_result, "counted")  # in at 10 ms

        loop.call_soon(someone_elses_slow_callback)
        async with guard:  # type: ignore[attr-defined]
            return await reply

    assert await answer_while_the_loop_is_blocked(Deadline(0.05)) == "counted"
    with pytest.raises(TimeoutError):  # what the plain timeout does in the same spot
        await answer_while_the_loop_is_blocked(asyncio.timeout(0.05))


async def test_a_loop_that_stays_late_still_gives_up_at_the_hard_limit() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()

    def hog() -> None:  # a loop that is never on time
        time.sleep(0.03)
        handle[0] = loop.call_later(0, hog)

    handle = [loop.call_later(0, hog)]
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            async with Deadline(0.05, lag_tolerance=0.01, hard_factor=4):
                await never
    finally:
        handle[0].cancel()
    assert 0.2 <= time.monotonic() - started < 0.5


async def test_only_its_own_cancellation_becomes_a_timeout() -> None:
    async def waits() -> None:
        async with Deadline(10):
            await asyncio.sleep(10)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
