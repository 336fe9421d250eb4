"""The open-loop schedule: request ``i`` is due at ``t0 + i / rate``, whatever happened
to the earlier ones.

A slow answer never delays the next send, so a stall in the system under test shows up
in the latencies instead of quietly lowering the offered load ("coordinated omission").
Callers measure latency from the *scheduled* time ``fire`` receives, not from when the
send actually happened: the difference (the tool's own timer and CPU delay) is the send
lag, worth reporting apart.

The loop wakes when the next request is due and fires everything that is due by then,
so a late wake-up catches up at once instead of drifting. ``fire`` must not block: it
hands the request to something that sends it (a task, a connection pool).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def run_schedule(
    t0: float, rate: float, total: int, fire: Callable[[int, float], None]
) -> None:
    """Call ``fire(i, t0 + i / rate)`` for ``i`` in ``range(total)``, each when it is due
    on ``time.perf_counter``'s clock."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    interval = 1.0 / rate
    sent = 0
    while sent < total:
        now = time.perf_counter()
        while sent < total and t0 + sent * interval <= now:
            fire(sent, t0 + sent * interval)
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.001, t0 + sent * interval - time.perf_counter()))
