"""A pure batcher: items in, batches out when a size or a time bound is reached.

No I/O and no clock of its own (the clock is injected), so its bounds are tested with
a fake clock. The caller asks ``add`` after each item (or ``add_many`` after each
page of them) and ``take_due`` whenever it wakes up; ``seconds_until_due`` tells it how
long it may block waiting for more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class FlushReason(StrEnum):
    SIZE = "size"  # max_items reached
    TIME = "time"  # the oldest item waited max_seconds
    DRAIN = "drain"  # shutdown: whatever is there
    ALONE = "alone"  # set aside by the caller (an entry on its last delivery is stored alone)


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    items: list[T]
    reason: FlushReason
    opened_at: float  # clock time of the first item


class Batcher(Generic[T]):
    def __init__(
        self, max_items: int, max_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_items < 1 or max_seconds <= 0:
            raise ValueError("a batch needs max_items >= 1 and max_seconds > 0")
        self._max_items = max_items
        self._max_seconds = max_seconds
        self._clock = clock
        self._items: list[T] = []
        self._opened_at = 0.0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def room(self) -> int:
        """How many items fit before the batch is full."""
        return self._max_items - len(self._items)

    def add(self, item: T) -> Batch[T] | None:
        """Add one item; the full batch when this item filled it."""
        if not self._items:
            self._opened_at = self._clock()
        self._items.append(item)
        if len(self._items) >= self._max_items:
            return self._take(FlushReason.SIZE)
        return None

    def add_many(self, items: list[T]) -> list[Batch[T]]:
        """Add items in order; the batches they filled (each of exactly ``max_items``)."""
        full: list[Batch[T]] = []
        start = 0
        while start < len(items):
            if not self._items:
                self._opened_at = self._clock()
            end = start + self._max_items - len(self._items)
            self._items.extend(items[start:end])
            start = end
            if len(self._items) >= self._max_items:
                full.append(self._take(FlushReason.SIZE))
        return full

    def take_due(self) -> Batch[T] | None:
        """The batch when its oldest item has waited ``max_seconds``; else None."""
        if self._items and self._clock() - self._opened_at >= self._max_seconds:
            return self._take(FlushReason.TIME)
        return None

    def drain(self) -> Batch[T] | None:
        return self._take(FlushReason.DRAIN) if self._items else None

    def seconds_until_due(self) -> float | None:
        """How long until ``take_due`` returns a batch; None while empty."""
        if not self._items:
            return None
        return max(0.0, self._opened_at + self._max_seconds - self._clock())

    def _take(self, reason: FlushReason) -> Batch[T]:
        batch = Batch(self._items, reason, self._opened_at)
        self._items = []
        return batch
