"""Capped exponential backoff with jitter, for retrying Redis and ClickHouse."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 0.1, maximum: float = 5.0) -> None:
        self._initial = initial
        self._maximum = maximum
        self._next = initial

    def next(self) -> float:
        """The delay to sleep now; the following one doubles, up to ``maximum``."""
        delay = self._next * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
        self._next = min(self._next * 2, self._maximum)
        return delay

    def reset(self) -> None:
        self._next = self._initial
