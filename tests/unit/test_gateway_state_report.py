"""The gateway's state report: counts over the recent window (a pinned clock), and events
Redis refuses shown as held in memory with Redis's reason; and how the Health page judges
such reports (``watchllm_dashboard.data.gateway_view``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest
from redis.exceptions import OutOfMemoryError

from watchllm_dashboard.data.gateway_view import (
    GatewayView,
    StoreBacklog,
    judge_cache,
    judge_events,
    judge_limiter,
)
from watchllm_gateway.events import StreamPublisher
from watchllm_gateway.state_report import StateReporter
from watchllm_shared.contracts.gateway_state import GatewayCounts, GatewayState

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RefusingCommands:
    """Redis at ``maxmemory``: every XADD is refused with OOM."""

    async def call_many(self, commands: list[Any], *, raise_errors: bool = True) -> list[Any]:
        return [OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'")
                for _ in commands]  # fmt: skip


def _publisher(commands: Any = None) -> StreamPublisher:
    metrics = SimpleNamespace(published=MagicMock(), dropped=MagicMock(), buffered=MagicMock(),
                              errors=MagicMock())  # fmt: skip
    return StreamPublisher(commands, metrics, 100, "test.events", 1000)  # type: ignore[arg-type]


def test_recent_counts_only_what_happened_in_the_last_window() -> None:
    clock = Clock()
    limiter = SimpleNamespace(policy_applied={"open": 0, "closed": 0}, failing=False)
    reporter = StateReporter(MagicMock(), "gw-1", 5.0, _publisher(), limiter, None, clock)  # type: ignore[arg-type]
    for _ in range(60):  # five minutes of reports, 4 fail-opens in each
        clock.now += 5
        limiter.policy_applied["open"] += 4
        state = reporter.state()
    assert state.totals.limiter_failed_open == 240 and state.recent.limiter_failed_open == 240
    for _ in range(60):  # five more minutes, quiet
        clock.now += 5
        state = reporter.state()
    assert state.totals.limiter_failed_open == 240 and state.recent.limiter_failed_open == 0
    clock.now += 5
    limiter.policy_applied["open"] += 1
    state = reporter.state()
    assert state.recent.limiter_failed_open == 1 and state.semantic_breaker is None
    assert len(reporter._samples) <= 62  # one window of samples is kept, no more


async def test_events_redis_refuses_are_reported_as_held_with_its_reason() -> None:
    events = _publisher(RefusingCommands())
    events.start()
    for n in range(3):
        events.publish({"data": str(n)})
    reporter = StateReporter(MagicMock(), "gw-1", 5.0, events, None, None, Clock())  # type: ignore[arg-type]
    for _ in range(100):
        await asyncio.sleep(0.01)
        if events.write_error is not None:
            break
    state = reporter.state()
    assert state.events_buffered == 3 and "OOM" in (state.events_write_error or "")
    verdict = judge_events(GatewayView([state], None))
    assert verdict.state == "degraded"
    assert verdict.reasons == [f"gw-1 holds 3 events in memory: Redis refuses them"
                               f" ({state.events_write_error})"]  # fmt: skip
    await events.close(0.05)
    assert events.dropped == 3


def _state(**fields: Any) -> GatewayState:
    now = datetime.now(UTC)
    return GatewayState(instance="gw-1", at=now, started_at=now - timedelta(hours=1), **fields)


def test_a_quiet_gateway_leaves_every_part_up() -> None:
    view = GatewayView([_state(semantic_breaker="closed")], StoreBacklog(3, 0))
    assert [j(view).state for j in (judge_cache, judge_limiter, judge_events)] == ["up"] * 3


def test_the_cache_is_degraded_by_timeouts_the_breaker_or_a_store_backlog() -> None:
    timeouts = _state(semantic_breaker="open", recent=GatewayCounts(semantic_timeouts=12))
    verdict = judge_cache(GatewayView([timeouts], None))
    assert verdict.reasons == [
        "gw-1 timed out 12 semantic lookups in the last 5 min, breaker open (semantic asks"
        " paused, one probe a second)"
    ]
    backlog = judge_cache(GatewayView([_state(semantic_breaker="closed")], StoreBacklog(200, 900)))
    assert backlog.state == "degraded" and "1,100 answers wait to be stored" in backlog.reasons[0]


def test_the_limiter_is_degraded_by_fail_opens_and_fail_closes() -> None:
    state = _state(recent=GatewayCounts(limiter_failed_open=1, limiter_failed_closed=2))
    assert judge_limiter(GatewayView([state], None)).reasons == [
        "gw-1 let 1 request through unchecked (fail-open) in the last 5 min, refused 2"
        " requests with 503 (fail-closed) in the last 5 min"
    ]
