"""Charging token usage to TPM windows, and cost to budgets' spend, from
request-completed events.

The limiter's consumer group reads the events stream (redis-py XREADGROUP: the work
per event is one FCALL, pipelined per batch, well under faststream's ~2 ms per
message). Delivery is at-least-once and charging is idempotent per event id, so a
redelivered event charges nothing twice.

Failure modes:
- Redis down: nothing is acknowledged; the loop backs off and resumes where it was.
- A consumer dies with events pending: after ``limiter_reclaim_idle_ms`` another
  consumer takes them over (XAUTOCLAIM).
- An event that cannot be parsed, or keeps failing ``limiter_max_deliveries`` times, is
  copied to ``<stream>.dlq`` with its error and acknowledged: counted, never dropped
  silently, never wedging the group.
- So is an event with an impossible token count: a negative prompt or completion count,
  or ``MAX_TOKENS_PER_EVENT`` (2^31) tokens or more in all. No model reads or writes
  anywhere near two billion tokens in one request (the largest context windows are a
  few million), so such a count is a bug or a forged event, and charging it would shut
  its project out for a minute. The bound also keeps every charge, and a minute's sum
  of them, an exact integer in the library's Lua numbers.
- Shutdown: the service sets ``stopping``; the loop ends after its current round
  (the XREADGROUP block, ≤ 1 s, and the batch it read, charged and acked), so nothing
  it charged is left pending (``watchllm_shared.stopping``: why not a cancellation).
- Alerts (``after_charge``, given every readable event of the batch: budget thresholds
  and error-rate counts, ``watchllm_limiter.alerts``) are raised after a batch is
  charged and before it is acknowledged: a crash in between reads the batch again, and
  the alerts' dedupe keys raise each one once.
- Events older than the TPM window (60 s) charge nothing: they cannot affect a limit.
- Spend (``contracts.budgets``): every event with a cost is charged to its project's
  and key's day and month, budget or not (a budget set mid-window counts the window so
  far), in whole nano-dollars rounded up, once per event: the first charge leaves a
  marker that lasts until the event's month ends, so an event redelivered after any
  outage (a consumer killed between charging and acknowledging) charges nothing more;
  once acknowledged, the marker is cut to ``ACKED_MARKER_MS``, which still covers a
  gateway re-sending a batch it could not confirm. A negative, non-finite or absurd
  cost (``MAX_COST_PER_EVENT_USD`` or more) parks the event like a bad token count.
- A gateway whose clock is off: a charge is timed by when the gateway published the
  event on Redis's clock (``stream_group.entry_ms`` of its entry), not by its
  ``occurred_at`` (the gateway's clock). A gateway 59 s behind Redis had its charges
  leave the window a second after they landed: the limit let ~40 times its amount
  through. The gateway publishes right after the answer, so the two differ by
  milliseconds when clocks agree.

Tracing (only with a tracer): each handled batch is a ``charge tokens batch`` span, and
each event that carried a ``traceparent`` gets a ``charge tokens`` span in its request's
trace (``stream_tracing.batch_spans``), with the tokens it charged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from watchllm_limiter.metrics import LimiterMetrics
from watchllm_limiter.settings import LimiterSettings
from watchllm_shared.contracts import RequestCompleted
from watchllm_shared.contracts.budgets import (
    ACKED_MARKER_MS,
    MAX_COST_PER_EVENT_USD,
    SPEND_FUNCTION,
    charge_spend_keys,
    spend_marker_key,
    usd_to_nanos,
)
from watchllm_shared.contracts.limits import CHARGE_FUNCTION, charge_keys
from watchllm_shared.stream_group import claim_stale, consume_forever, dead_letter, entry_ms
from watchllm_shared.stream_tracing import BatchTrace, batch_spans, messaging_attributes

log = logging.getLogger(__name__)

_BLOCK_MS = 1000
MAX_TOKENS_PER_EVENT = 2**31  # this many tokens or more in one event is refused


def token_count_error(event: RequestCompleted) -> str | None:
    """Why the event's token counts (or cost) cannot be charged, or None if they can."""
    if event.prompt_tokens < 0 or event.completion_tokens < 0:
        return (
            f"negative token count: prompt_tokens={event.prompt_tokens}, "
            f"completion_tokens={event.completion_tokens}"
        )
    tokens = event.prompt_tokens + event.completion_tokens
    if tokens >= MAX_TOKENS_PER_EVENT:
        return f"absurd token count: {tokens} tokens (the bound is {MAX_TOKENS_PER_EVENT})"
    cost = event.cost_usd
    if not cost.is_finite() or cost < 0 or cost >= MAX_COST_PER_EVENT_USD:
        return f"absurd cost: {cost} USD (the bound is {MAX_COST_PER_EVENT_USD} USD)"
    return None


class TokenCharger:
    def __init__(
        self, redis: aioredis.Redis, metrics: LimiterMetrics, settings: LimiterSettings,
        tracer: Tracer | None = None,
        after_charge: Callable[[Sequence[RequestCompleted]], Awaitable[object]] | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._after_charge = after_charge
        self._tracer = tracer
        self._metrics = metrics
        self._stream = settings.events_stream
        self._group = settings.limiter_consumer_group
        self._consumer = settings.limiter_consumer_name
        self._reclaim_idle_ms = settings.limiter_reclaim_idle_ms
        self._max_deliveries = settings.limiter_max_deliveries
        self._batch = settings.limiter_batch_size

    async def run(self, stopping: asyncio.Event | None = None) -> None:
        """Charge until ``stopping`` is set; the batch in hand is charged and acked first."""
        await consume_forever(self._redis, self._stream, self._group, self._round,
                              "token charging", stopping=stopping)  # fmt: skip

    async def _round(self) -> None:
        await self._reclaim()
        await self._consume_once()

    async def _consume_once(self) -> None:
        reply: Any = await self._redis.xreadgroup(
            self._group, self._consumer, {self._stream: ">"}, count=self._batch, block=_BLOCK_MS
        )
        for _, entries in reply or []:
            await self._handle(entries)
        await self._report_lag()

    async def _reclaim(self) -> None:
        """Take over events left pending by dead consumers; park the hopeless ones."""
        retry, exhausted = await claim_stale(
            self._redis, self._stream, self._group, self._consumer, self._reclaim_idle_ms,
            self._max_deliveries, self._batch,
        )  # fmt: skip
        for entry_id, fields in exhausted:
            await self._dead_letter(entry_id, fields, "too many deliveries")
        await self._handle(retry)

    async def _handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        if not entries:
            return
        if self._tracer is None:
            await self._handle_batch(entries, None)
            return
        attributes = messaging_attributes(self._stream, self._group)
        with batch_spans(self._tracer, "charge tokens", entries, attributes) as traced:
            await self._handle_batch(entries, traced)

    async def _handle_batch(
        self, entries: list[tuple[bytes, dict[bytes, bytes]]], traced: BatchTrace | None
    ) -> None:
        charges: list[tuple[bytes, RequestCompleted]] = []
        readable: list[RequestCompleted] = []
        done: list[bytes] = []
        for entry_id, fields in entries:
            try:
                event = RequestCompleted.from_stream_fields(fields)
            except (KeyError, ValidationError, ValueError) as exc:
                await self._dead_letter(entry_id, fields, f"unreadable event: {exc}")
                if traced is not None:
                    traced.fail(entry_id, "unreadable event, parked in the dead-letter stream")
                continue
            if (error := token_count_error(event)) is not None:
                await self._dead_letter(entry_id, fields, f"unreadable event: {error}")
                if traced is not None:
                    traced.fail(entry_id, "bad token count, parked in the dead-letter stream")
                continue
            readable.append(event)
            tokens = event.prompt_tokens + event.completion_tokens
            if (
                event.project_id is None
                or event.key_id is None
                or (tokens <= 0 and event.cost_usd <= 0)
            ):
                self._metrics.events_processed.labels("nothing_to_charge").inc()
                done.append(entry_id)
                tokens = 0
            else:
                charges.append((entry_id, event))
            if traced is not None:
                traced.set(entry_id, "watchllm.tokens_charged", tokens)
        await self._charge(charges)
        if readable and self._after_charge is not None:  # before the ack: see the module
            await self._after_charge(readable)
        done += [entry_id for entry_id, _ in charges]
        if done:
            await self._acknowledge(done, charges)

    async def _acknowledge(
        self, done: list[bytes], charges: list[tuple[bytes, RequestCompleted]]
    ) -> None:
        """XACK, then (same round trip, in order) cut the spend markers of what it acked."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(self._stream, self._group, *done)
            for _, event in charges:
                if event.cost_usd > 0:
                    assert event.project_id is not None
                    pipe.pexpire(spend_marker_key(event.project_id, event.event_id),
                                 ACKED_MARKER_MS, lt=True)  # fmt: skip
            await pipe.execute()

    async def _charge(self, charges: list[tuple[bytes, RequestCompleted]]) -> None:
        if not charges:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id, event in charges:
                assert event.project_id is not None and event.key_id is not None
                tokens = event.prompt_tokens + event.completion_tokens
                keys = charge_keys(event.project_id, event.key_id)
                # Timed on Redis's clock (the XADD), not ``occurred_at``: see the module.
                pipe.fcall(
                    CHARGE_FUNCTION, len(keys), *keys,
                    str(event.key_id), str(event.event_id), tokens, entry_ms(entry_id), "",
                )  # fmt: skip
                if event.cost_usd > 0:
                    spend = charge_spend_keys(event.project_id, event.key_id, event.event_id)
                    pipe.fcall(SPEND_FUNCTION, len(spend), *spend,
                               usd_to_nanos(event.cost_usd), entry_ms(entry_id), "")  # fmt: skip
            await pipe.execute()
        for _, event in charges:
            self._metrics.tokens_charged.inc(event.prompt_tokens + event.completion_tokens)
            self._metrics.spend_charged.inc(float(event.cost_usd))
        self._metrics.events_processed.labels("charged").inc(len(charges))

    async def _dead_letter(self, entry_id: bytes, fields: dict[Any, Any], error: str) -> None:
        await dead_letter(self._redis, self._stream, self._group, (entry_id, fields), error)
        self._metrics.dead_letters.inc()
        log.warning("event %s parked in %s.dlq: %s", entry_id, self._stream, error)

    async def _report_lag(self) -> None:
        groups = await self._redis.xinfo_groups(self._stream)
        for group in groups:
            if group["name"] in (self._group, self._group.encode()):
                lag = group.get("lag")
                if lag is not None:
                    self._metrics.consumer_lag.set(lag)
