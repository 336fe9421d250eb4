"""``FairQueue``: round-robin across projects, a bounded queue per project."""

from __future__ import annotations

import asyncio

import pytest

from watchllm_cache.service.fair_queue import FairQueue, QueueClosedError


def test_projects_take_turns_whatever_their_backlogs() -> None:
    queue: FairQueue[str] = FairQueue(per_project=100)
    for n in range(50):
        queue.put("a", f"a{n}")
    queue.put("b", "b0")
    queue.put("c", "c0")
    queue.put("b", "b1")
    taken = [queue.get_nowait() for _ in range(6)]
    assert taken == ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert len(queue) == 47 and queue.waiting("a") == 47 and queue.waiting("b") == 0


def test_a_full_project_sheds_its_oldest_and_no_one_elses() -> None:
    queue: FairQueue[int] = FairQueue(per_project=2)
    assert queue.put("a", 1) is None and queue.put("a", 2) is None
    assert queue.put("b", 10) is None
    assert queue.put("a", 3) == 1
    assert queue.waiting("a") == 2 and queue.waiting("b") == 1 and len(queue) == 3
    assert queue.drain() == [2, 10, 3]
    assert len(queue) == 0 and queue.get_nowait() is None


async def test_get_waits_for_a_put_and_ends_once_closed_and_empty() -> None:
    queue: FairQueue[str] = FairQueue(per_project=4)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put("a", "x")
    assert await getter == "x"
    queue.put("a", "y")
    queue.close()
    assert await queue.get() == "y"  # what was queued is still handed out
    with pytest.raises(QueueClosedError):
        await queue.get()
