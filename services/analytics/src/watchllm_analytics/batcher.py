"""A pure batcher: items in, batches out when a size or a time bound is reached.

No I/O and no clock of its own (the clock is injected), so its bounds are tested with
a fake clock. The caller asks ``add`` after each item (or ``add_many`` after each
page of them) and ``take_due`` whenever it wakes up; ``seconds_until_due`` tells it how
long it may block waiting for more.

An item may count as several (``add(block, size=len(block))``: a page of rows decoded
together); the bound is then on the sizes, and a batch passes it by less than its last
item (the caller reads at most ``room`` entries a page, so only re-read pages overshoot).
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
        self._size = 0
        self._opened_at = 0.0

    def __len__(self) -> int:
        """The size of the open batch (its item count when every item counts as one)."""
        return self._size

    @property
    def room(self) -> int:
        """How much fits before the batch is full."""
        return self._max_items - self._size

    def add(self, item: T, size: int = 1, at: float | None = None) -> Batch[T] | None:
        """Add one item counting as ``size``; the full batch when this item filled it.
        ``at``: the clock time the item was read, when not now (it opens the batch then)."""
        if not self._items:
            self._opened_at = self._clock() if at is None else at
        self._items.append(item)
        self._size += size
        if self._size >= self._max_items:
            return self._take(FlushReason.SIZE)
        return None

    def add_many(self, items: list[T]) -> list[Batch[T]]:
        """Add items counting one each, in order; the batches they filled (each of exactly
        ``max_items``)."""
        full: list[Batch[T]] = []
        start = 0
        while start < len(items):
            if not self._items:
                self._opened_at = self._clock()
            end = start + self._max_items - self._size
            self._items.extend(items[start:end])
            self._size += len(items[start:end])
            start = end
            if self._size >= self._max_items:
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
        self._size = 0
        return batch
