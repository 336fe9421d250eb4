"""Which deployments are healthy: cooled down after a failure, probed back in after.

State lives in this gateway replica's memory only: each replica learns from its own
traffic (a deployment failing for one replica is soon failing for all of them), keeps
no state in Redis on the request path, and starts with every deployment healthy.

A deployment that fails (429, 5xx, connection refused, connect or read timeout, a
connection broken before the answer's headers) cools down: for a 429's
``retry-after`` (or ``retry-after-ms``) when it gives one, else ``base`` seconds doubled
for each failure in a row, both capped at ``cap``. While it cools, ``available`` is
False and the balancer sends its traffic elsewhere. When the time is up, the first
request that picks it is its probe, alone: others skip it until the probe answers (or
for ``cap`` seconds, should the probe never report). A probe that succeeds makes the
deployment healthy again (failures forgotten); one that fails cools it for longer.

The clock is passed in, so tests control time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Health:
    failures: int = 0  # in a row
    until: float = 0.0  # cooling down until this clock time
    probe_since: float | None = None  # a probe is in flight since then


class Cooldowns:
    def __init__(
        self, base: float, cap: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.base = base
        self.cap = cap
        self.clock = clock
        self._health: dict[str, _Health] = {}

    def available(self, name: str, now: float) -> bool:
        health = self._health.get(name)
        if health is None or health.failures == 0:
            return True
        if now < health.until:
            return False
        return health.probe_since is None or now - health.probe_since >= self.cap

    def remaining(self, name: str, now: float) -> float:
        """Seconds until its cooldown ends (0 when it is not cooling down)."""
        health = self._health.get(name)
        return max(0.0, health.until - now) if health is not None else 0.0

    def begin(self, name: str, now: float) -> None:
        """An attempt goes to ``name``: after a cooldown, it is the probe."""
        health = self._health.get(name)
        if health is not None and health.failures and now >= health.until:
            health.probe_since = now

    def succeeded(self, name: str) -> None:
        self._health.pop(name, None)

    def released(self, name: str) -> None:
        """An attempt ended without telling whether ``name`` works (the caller's error,
        a cancelled request): a probe it was may be sent again."""
        health = self._health.get(name)
        if health is not None:
            health.probe_since = None

    def failed(self, name: str, now: float, retry_after: float | None = None) -> float:
        """Cool ``name`` down; returns for how long."""
        health = self._health.setdefault(name, _Health())
        health.failures += 1
        health.probe_since = None
        if retry_after is not None and retry_after > 0:
            seconds = min(retry_after, self.cap)
        else:
            seconds = min(self.base * 2 ** min(health.failures - 1, 32), self.cap)
        health.until = max(health.until, now + seconds)
        return seconds

    def cooling(self, now: float) -> dict[str, float]:
        """Deployments cooling down now, with the seconds they have left."""
        return {n: h.until - now for n, h in self._health.items() if h.until > now}
