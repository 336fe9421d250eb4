"""WatchLLM's own load tool: open-loop (fixed arrival rate) and closed-loop runs.

Method
------
*Open loop* (``watchllm_shared.cli.deployment.openloop``, shared with ``watchllm
loadtest``). Request ``i`` is scheduled at ``t0 + i / rate`` whatever happened to the
earlier ones: a slow answer never delays the next send, so a stall in the system
under test shows up in the latencies instead of quietly lowering the offered load
("coordinated omission"). Latency is measured from the *scheduled* send time to the
last byte of the response; the *service time* from the actual send is reported too,
and so is the send lag (actual minus scheduled: the load tool's own timer and CPU
delay, the same for every target, so it cancels out of gateway-minus-direct
comparisons). The scheduler wakes when the next request is due and sends everything
that is due; requests go to an idle keep-alive connection, a new connection is
opened while all are busy (up to a cap), and at the cap requests queue for the next
free connection (counted as ``queued_at_cap``, their wait included in latency). Sends
more than ``late_threshold`` after their scheduled time are counted as late. After
the last send the run waits up to ``drain_timeout`` for outstanding answers; those
still missing count as errors (``timeout`` if sent, ``not_sent`` if still queued).

*Closed loop* (saturation). ``C`` workers each send a request, wait for its answer and
send the next at once, for ``T`` seconds, over ``C`` persistent connections. The
completed requests per second is the most the target sustains at that concurrency,
with the latencies it costs.

Per request the tool records the status, the scheduled and actual send times, the
first body byte (time to first byte for streams) and the last byte. It is built for
little CPU per request: a hand-written HTTP/1.1 client on asyncio protocols
(``watchllm_shared.cli.deployment.http1`` and ``.pool``, which ``watchllm loadtest``
uses too), the request bytes built once per target, completions as callbacks (no task
per request). Run it on uvloop for the
lowest cost: about 15 µs of CPU per request in a closed loop, 70 µs at 1,000 req/s
open loop (timer wake-ups), enough for 20,000 req/s against the fake provider.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.bench.stats import RunSummary, distribution
from watchllm_shared.cli.deployment.http1 import Record, Target
from watchllm_shared.cli.deployment.openloop import run_schedule
from watchllm_shared.cli.deployment.pool import ConnectionPool

__all__ = ["Record", "Run", "Target", "run_closed_loop", "run_open_loop", "summarise"]


@dataclass
class Run:
    """One run's records plus the pool's counts; several runs can be merged."""

    records: list[Record] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    queued_at_cap: int = 0
    connections: int = 0
    late_threshold: float = 0.002


async def run_open_loop(
    target: Target,
    rate: float,
    duration: float,
    *,
    max_connections: int = 256,
    warm_connections: int = 8,
    drain_timeout: float = 5.0,
    late_threshold: float = 0.002,
    keep_body: bool = False,
) -> Run:
    """Send ``rate * duration`` requests, request ``i`` at ``t0 + i / rate``."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    pool = ConnectionPool(target, max_connections, keep_body)
    await pool.warm(warm_connections)
    run = Run(late_threshold=late_threshold)
    total = max(1, round(rate * duration))
    t0 = time.perf_counter() + 0.002
    run.started = t0

    def fire(index: int, scheduled: float) -> None:
        record = Record(scheduled)
        run.records.append(record)
        pool.submit(record)

    try:
        await run_schedule(t0, rate, total, fire)
        await pool.wait_idle(drain_timeout)
    finally:
        await _close(pool, run)
    return run


async def run_closed_loop(
    target: Target,
    concurrency: int,
    duration: float,
    *,
    drain_timeout: float = 5.0,
    keep_body: bool = False,
) -> Run:
    """``concurrency`` workers, each sending its next request when the last is answered."""
    pool = ConnectionPool(target, concurrency, keep_body)
    await pool.warm(concurrency)
    run = Run(late_threshold=float("inf"))
    deadline = time.perf_counter() + duration

    def next_request(previous: Record | None) -> None:
        now = time.perf_counter()
        if now >= deadline:
            return
        record = Record(now, next_request)
        run.records.append(record)
        pool.submit(record)

    run.started = time.perf_counter()
    try:
        for _ in range(concurrency):
            next_request(None)
        await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
        await pool.wait_idle(drain_timeout)
    finally:
        await _close(pool, run)
    return run


async def _close(pool: ConnectionPool, run: Run) -> None:
    await pool.close()  # still unanswered after the drain: ``timeout`` or ``not_sent``
    done = [r.done for r in run.records if r.done is not None and r.error is None]
    run.ended = max(done, default=time.perf_counter())
    run.queued_at_cap, run.connections = pool.queued_at_cap, pool.opened


def summarise(runs: Sequence[Run]) -> RunSummary:
    """Merge runs (slices of one measurement) into one summary."""
    records = [r for run in runs for r in run.records]
    ok = [r for r in records if r.error is None and r.status == 200 and r.done is not None]
    kinds = Counter(
        r.error or f"http_{r.status}"
        for r in records
        if not (r.error is None and r.status == 200 and r.done is not None)
    )
    duration = sum(max(0.0, run.ended - run.started) for run in runs)
    late = sum(
        1
        for run in runs
        for r in run.records
        if r.sent is not None and r.sent - r.scheduled > run.late_threshold
    )
    return RunSummary(
        requests=len(records),
        ok=len(ok),
        errors=len(records) - len(ok),
        error_kinds=dict(kinds),
        duration_s=duration,
        throughput_rps=len(ok) / duration if duration > 0 else 0.0,
        latency_ms=distribution(r.done - r.scheduled for r in ok),  # type: ignore[operator]
        service_ms=distribution(r.done - r.sent for r in ok),  # type: ignore[operator]
        ttfb_ms=distribution(r.first_byte - r.scheduled for r in ok if r.first_byte),
        send_lag_ms=distribution(r.sent - r.scheduled for r in records if r.sent is not None),
        late_sends=late,
        queued_at_cap=sum(run.queued_at_cap for run in runs),
        connections=sum(run.connections for run in runs),
        sse_events=sum(r.events for r in ok),
    )
