"""Charging token usage to TPM windows, and cost to budgets' spend, from
request-completed events.

The limiter's consumer group reads the events stream (redis-py XREADGROUP) and charges
each batch with one ``FCALL watchllm_charge_batch`` per project (every key of a call
shares its project's hash slot, so Redis Cluster works; at most ``MAX_EVENTS_PER_CALL``
events a call, so one call never holds Redis for long), all in one round trip, then
acknowledges the batch with one XACK. Delivery is at-least-once and charging is
idempotent per event id, so a redelivered event charges nothing twice.

Light traffic is gathered by time (issue 21: at 50 events/s a wake-up, decode, FCALL
and XACK per event cost ~1.7 ms of CPU each): once a read finds the consumer caught up
(fewer entries than a batch), it waits ``limiter_gather_ms`` (200 ms) for what follows
and handles it all as one batch. Idle, it sleeps in XREADGROUP's block; stale entries
are looked for every ``min(limiter_reclaim_idle_ms, 5 s)`` and the lag gauge refreshed
every 5 s, not on every round. The cost: a charge lands up to ``limiter_gather_ms``
later, so the requests admitted meanwhile may overshoot a tokens-per-minute limit or a
budget by that much more traffic (see library.lua and budget.lua on overshoot).

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
  (the XREADGROUP block, ≤ 1 s, and the batch it read, charged and acked; a gathering
  wait ends at once), so nothing it charged is left pending
  (``watchllm_shared.stopping``: why not a cancellation).
- A charge call that fails (Redis lost the library, a Lua error): the round fails before
  its XACK, so the batch stays pending and is redelivered (the calls that did run
  charge nothing twice); that is why the XACK is not pipelined with the charges.
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
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from watchllm_limiter.metrics import LimiterMetrics
from watchllm_limiter.settings import LimiterSettings
from watchllm_shared.contracts import RequestCompleted
from watchllm_shared.contracts.budgets import (
    ACKED_MARKER_MS,
    MAX_COST_PER_EVENT_USD,
    spend_marker_key,
    usd_to_nanos,
)
from watchllm_shared.contracts.limits import CHARGE_BATCH_FUNCTION, charge_batch_keys
from watchllm_shared.stopping import sleep_unless
from watchllm_shared.stream_group import claim_stale, consume_forever, dead_letter, entry_ms
from watchllm_shared.stream_tracing import BatchTrace, batch_spans, messaging_attributes

log = logging.getLogger(__name__)

_BLOCK_MS = 1000
_LAG_REPORT_SECONDS = 5.0  # consumer_lag is refreshed this often (an XINFO GROUPS)
_MAX_RECLAIM_SECONDS = 5.0  # stale entries are looked for at least this often
# Events per charge call: an event with tokens and a cost takes ~30 µs inside Redis (two
# token windows, four spend counters, its marker; measured on a busy 2-core machine),
# and Redis serves no one else during a call (the gateways' asks wait), so a backlog's
# batch of one project goes in calls of at most this many (~1 ms each), not one of 500.
MAX_EVENTS_PER_CALL = 32
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
        self._gather_seconds = settings.limiter_gather_ms / 1000
        self._reclaim_every = min(_MAX_RECLAIM_SECONDS, self._reclaim_idle_ms / 1000)
        self._next_reclaim = self._next_lag_report = 0.0
        self._stopping = asyncio.Event()

    async def run(self, stopping: asyncio.Event | None = None) -> None:
        """Charge until ``stopping`` is set; the batch in hand is charged and acked first."""
        self._stopping = stopping or asyncio.Event()
        await consume_forever(self._redis, self._stream, self._group, self._round,
                              "token charging", stopping=self._stopping)  # fmt: skip

    async def _round(self) -> None:
        if time.monotonic() >= self._next_reclaim:
            await self._reclaim()
            self._next_reclaim = time.monotonic() + self._reclaim_every
        await self._consume_once()
        if time.monotonic() >= self._next_lag_report:
            await self._report_lag()
            self._next_lag_report = time.monotonic() + _LAG_REPORT_SECONDS

    async def _consume_once(self) -> None:
        entries = await self._read(self._batch, _BLOCK_MS)
        if entries and len(entries) < self._batch and self._gather_seconds > 0:
            # Caught up with the stream: gather what follows for a while rather than wake,
            # charge and acknowledge for every event that trickles in. A stop ends the
            # wait at once; what arrived meanwhile is read and handled with the rest.
            await sleep_unless(self._stopping, self._gather_seconds)
            entries += await self._read(self._batch - len(entries), None)
        await self._handle(entries)

    async def _read(
        self, count: int, block_ms: int | None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """New entries for this consumer; ``block_ms`` None returns at once."""
        reply: Any = await self._redis.xreadgroup(
            self._group, self._consumer, {self._stream: ">"}, count=count, block=block_ms
        )
        return [entry for _, entries in reply or [] for entry in entries]

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
        """One FCALL per project (its keys share a hash slot; ``MAX_EVENTS_PER_CALL``
        events at most), all in one round trip.
        Not acknowledged in that round trip: a call that fails (a library that Redis lost,
        say) must leave its events pending, to be charged when they are redelivered."""
        if not charges:
            return
        by_project: dict[UUID, list[tuple[bytes, RequestCompleted]]] = {}
        for entry_id, event in charges:
            assert event.project_id is not None
            by_project.setdefault(event.project_id, []).append((entry_id, event))
        async with self._redis.pipeline(transaction=False) as pipe:
            for project_id, events in by_project.items():
                for start in range(0, len(events), MAX_EVENTS_PER_CALL):
                    chunk = events[start : start + MAX_EVENTS_PER_CALL]
                    keys, args = charge_batch_call(project_id, chunk)
                    pipe.fcall(CHARGE_BATCH_FUNCTION, len(keys), *keys, *args)
            await pipe.execute()
        tokens = sum(event.prompt_tokens + event.completion_tokens for _, event in charges)
        self._metrics.tokens_charged.inc(tokens)
        self._metrics.spend_charged.inc(float(sum(event.cost_usd for _, event in charges)))
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


def charge_batch_call(
    project_id: UUID, events: list[tuple[bytes, RequestCompleted]]
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of ``watchllm_charge_batch`` for one project's events (entry id and
    event), as the charger sends them."""
    key_index: dict[UUID, int] = {}
    costed: list[UUID] = []
    per_event: list[str | int] = []
    for entry_id, event in events:
        assert event.key_id is not None
        index = key_index.setdefault(event.key_id, len(key_index) + 1)
        nanos = usd_to_nanos(event.cost_usd) if event.cost_usd > 0 else 0
        if nanos:
            costed.append(event.event_id)
        # Timed on Redis's clock (the XADD), not ``occurred_at``: see the module.
        per_event += [index, str(event.event_id), event.prompt_tokens + event.completion_tokens,
                      entry_ms(entry_id), nanos]  # fmt: skip
    keys = charge_batch_keys(project_id, list(key_index), costed)
    return keys, ["", len(key_index), *(str(key_id) for key_id in key_index), *per_event]
