"""Waiting asks, one queue per project, served round-robin.

The ask server puts every ask it reads here and its workers take them out. One
project's burst cannot push another's asks past their deadline: ``get`` takes one ask
from each project with asks waiting, in turn (the projects in the order they started
waiting), so an ask waits behind at most one ask of each other project, whatever
their backlogs. And one project cannot hold more than ``per_project`` asks waiting:
``put`` sheds that project's oldest (the one whose deadline comes first, the least
likely to be answered in time), which the caller answers at once as a miss.

No I/O and no clock: the ask server decides what shedding and expiry mean. ``close``
ends the workers: ``get`` raises ``QueueClosedError`` once nothing is left.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueClosedError(Exception):
    """``get`` on a closed queue with nothing left in it."""


class FairQueue(Generic[T]):
    def __init__(self, per_project: int) -> None:
        if per_project < 1:
            raise ValueError("per_project must be at least 1")
        self._per_project = per_project
        self._queues: OrderedDict[str, deque[T]] = OrderedDict()  # next turn first
        self._size = 0
        self._nonempty = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return self._size

    def waiting(self, project: str) -> int:
        queue = self._queues.get(project)
        return len(queue) if queue is not None else 0

    def put(self, project: str, item: T) -> T | None:
        """Queue ``item`` for ``project``; returns the project's oldest waiting item when
        this one took its place (the project already had ``per_project`` waiting)."""
        queue = self._queues.get(project)
        if queue is None:
            queue = self._queues[project] = deque()  # its first turn comes after the others'
        queue.append(item)
        self._size += 1
        self._nonempty.set()
        if len(queue) <= self._per_project:
            return None
        self._size -= 1
        return queue.popleft()

    def get_nowait(self) -> T | None:
        """The next project's oldest item (None when nothing waits); that project's
        next turn comes after every other waiting project's."""
        if not self._queues:
            return None
        project, queue = next(iter(self._queues.items()))
        item = queue.popleft()
        self._size -= 1
        if queue:
            self._queues.move_to_end(project)
        else:
            del self._queues[project]
        if not self._queues and not self._closed:
            self._nonempty.clear()
        return item

    async def get(self) -> T:
        """``get_nowait``, waiting until something is queued; ``QueueClosedError`` once
        the queue is closed and empty."""
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            if self._closed:
                raise QueueClosedError
            await self._nonempty.wait()

    def close(self) -> None:
        """Wake every ``get``: what is queued is still handed out, then they raise."""
        self._closed = True
        self._nonempty.set()

    def drain(self) -> list[T]:
        """Everything still waiting, in turn order; the queue is empty afterwards."""
        items: list[T] = []
        while (item := self.get_nowait()) is not None:
            items.append(item)
        return items
