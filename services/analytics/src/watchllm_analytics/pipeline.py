"""The ingest pipeline: stream entries → rows → batches → ClickHouse → acknowledgement.

One task reads (new entries, its own pending ones at start, stale ones of others every
``reclaim_interval``), decodes and batches; a second task stores batches and acks them
(``storing``). Between them a queue of two batches: reading and decoding the next batch
overlaps the insert of the previous one, and a slow ClickHouse stops the reading.

Light traffic is gathered by time: once the reader has caught up with the stream and a
batch is open, it sleeps until the batch is due instead of waking for each event, and
the first events after a quiet spell are held undecoded until then (``_gather``), so a
trickle costs one page decoded, two XREADGROUPs and one insert per
``batch_max_seconds``, not a wake-up and a page per event (issue 21: at 50 events/s
that was a third of a core). A backlog still reads full pages back to back, and a
batch closes at ``batch_max_rows`` or ``batch_max_seconds``, whichever comes first.

Failure modes enforced here:
- Redis down while reading: logged once per outage, retried with capped backoff.
- Unreadable entry (poison): parked in the dead-letter stream at once, with the reason;
  the rest flows on. Pages are decoded in one go (``page_decoder``); a poison entry only
  sends its page the slower way, one entry at a time, where the contract refuses it.
- An entry delivered more than ``max_deliveries`` times (it kept failing, or crashed the
  consumers that held it) is parked without another try. On its last allowed delivery
  it is stored alone, so a poison entry cannot take its batch-mates down with it.
- Pending entries trimmed from the stream before being stored: acked and counted lost.
- SIGTERM (``stop``): reading stops after the current XREADGROUP (≤ 0.5 s; a gathering
  sleep ends at once and the events it held are read into the batch), what was read is
  flushed as a last batch, stored and acked (see ``storing``), then ``run`` returns and
  the caller closes the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from watchllm_analytics.backoff import Backoff
from watchllm_analytics.batcher import Batch, Batcher, FlushReason
from watchllm_analytics.blocks import RowBlock
from watchllm_analytics.dead_letters import DeadLetters, ParkReason
from watchllm_analytics.health import HealthState
from watchllm_analytics.metrics import AnalyticsMetrics
from watchllm_analytics.page_decoder import decode_page
from watchllm_analytics.rows import UnreadableEvent, decode_entry, warm_up
from watchllm_analytics.storing import BatchStorer
from watchllm_analytics.stream_group import Delivery, Fields, GroupConsumer, NewEntries
from watchllm_shared.heap import freeze_startup_heap

log = logging.getLogger(__name__)

_MAX_BLOCK_MS = 500
# Collect the youngest generation every 50,000 container allocations instead of 700:
# the pipeline allocates several containers per event and keeps ~100,000 rows in
# flight, so the default thresholds ran collections many times a second for nothing
# (py-spy showed a fifth of the reading thread's time in allocations that triggered one).
_GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """For the service process only (it allocates at a high, steady rate); call at start."""
    freeze_startup_heap()
    gc.set_threshold(*_GC_THRESHOLDS)


@dataclass(frozen=True, slots=True)
class PipelineLimits:
    batch_max_rows: int
    batch_max_seconds: float
    read_count: int
    max_deliveries: int
    reclaim_interval_seconds: float


class IngestPipeline:
    def __init__(
        self,
        consumer: GroupConsumer,
        dead_letters: DeadLetters,
        storer: BatchStorer,
        metrics: AnalyticsMetrics,
        health: HealthState,
        limits: PipelineLimits,
    ) -> None:
        self._consumer = consumer
        self._dead_letters = dead_letters
        self._storer = storer
        self._metrics = metrics
        self._health = health
        self._limits = limits
        self._batcher: Batcher[RowBlock] = Batcher(limits.batch_max_rows, limits.batch_max_seconds)
        self._queue: asyncio.Queue[Batch[RowBlock] | None] = asyncio.Queue(maxsize=2)
        self._stopping = asyncio.Event()
        self._storing: asyncio.Task[None] | None = None

    def stop(self) -> None:
        self._stopping.set()
        self._storer.begin_shutdown()

    async def run(self) -> None:
        """Consume until ``stop``; returns once everything read was stored (or given up)."""
        self._storing = asyncio.create_task(self._storer.run(self._queue), name="analytics-store")
        # Alongside the first reads (the first insert waits for it, as it would anyway).
        warming = asyncio.create_task(asyncio.to_thread(warm_up), name="analytics-warm-up")
        try:
            await self._read_until_stopped()
        finally:
            self._storer.begin_shutdown()  # also when reading failed
            if last := self._batcher.drain():
                await self._hand_over(last)
            await self._hand_over(None)
            await self._storing
            await warming

    async def _read_until_stopped(self) -> None:
        backoff = Backoff(0.1, 5.0)
        prepared = failing = False
        next_reclaim = 0.0
        while not self._stopping.is_set():
            try:
                if not prepared:
                    await self._consumer.ensure_group()
                    await self._recover_own_pending()
                    prepared = True
                if time.monotonic() >= next_reclaim:
                    await self._reclaim_stale()
                    next_reclaim = time.monotonic() + self._limits.reclaim_interval_seconds
                await self._read_once()
            except RedisError as exc:
                self._metrics.redis_errors.labels("read").inc()
                if not failing:
                    log.error("cannot read events from Redis, retrying: %s", exc)
                failing = True
                self._health.redis_up = False
                await self._sleep_unless_stopped(backoff.next())
                continue
            if failing:
                log.warning("reading events from Redis again")
            failing = False
            self._health.redis_up = True
            backoff.reset()

    async def _read_once(self) -> None:
        count = min(self._limits.read_count, max(1, self._batcher.room))
        new = await self._consumer.read_new(count, self._block_ms())
        opened_at = None
        if new.entry_ids and len(new.entry_ids) < count and not len(self._batcher):
            opened_at, new = await self._gather(new, count)
        if new.entry_ids:
            await self._take_page(new.entry_ids, new.fields, opened_at=opened_at)
        if due := self._batcher.take_due():
            await self._hand_over(due)
        elif len(new.entry_ids) < count and (wait := self._batcher.seconds_until_due()):
            # Caught up with the stream, a batch open: gather until it is due rather than
            # wake (and decode a page) for every event that trickles in.
            await self._sleep_unless_stopped(wait)

    async def _gather(self, first: NewEntries, count: int) -> tuple[float, NewEntries]:
        """The first events after a quiet spell, and those that follow them until the batch
        they open is due: decoded together, in one page, with the time the batch opened.
        Light traffic thus costs one page and one batch per ``batch_max_seconds``, not a
        page per event (decoding a page has a fixed cost of a few milliseconds)."""
        opened_at = time.monotonic()
        await self._sleep_unless_stopped(self._limits.batch_max_seconds)
        try:
            more = await self._consumer.read_new(count - len(first.entry_ids), 1)
        except RedisError:
            return opened_at, first  # stored as they are; the next read reports the outage
        return opened_at, NewEntries(first.entry_ids + more.entry_ids, first.fields + more.fields)

    def _block_ms(self) -> int:
        due = self._batcher.seconds_until_due()
        if due is None:
            return _MAX_BLOCK_MS
        return min(_MAX_BLOCK_MS, max(1, math.ceil(due * 1000)))

    async def _recover_own_pending(self) -> None:
        """Entries this consumer name read before a restart and never acknowledged."""
        after = b"0"
        while entries := await self._consumer.read_own_pending(after, self._limits.read_count):
            self._metrics.redelivered.labels("own_pending").inc(len(entries))
            after = entries[-1].entry_id
            await self._accept(entries)
        if after != b"0":
            log.info("recovered own pending entries up to %s", after.decode())

    async def _reclaim_stale(self) -> None:
        cursor = b"0-0"
        while True:
            cursor, entries = await self._consumer.reclaim_stale(cursor, self._limits.read_count)
            if entries:
                self._metrics.redelivered.labels("reclaimed").inc(len(entries))
                log.info("reclaimed %d stale pending entries", len(entries))
                await self._accept(entries)
            if cursor in (b"0-0", "0-0"):
                return

    async def _accept(self, deliveries: list[Delivery]) -> None:
        """Entries read again (own pending, reclaimed), with their delivery counts."""
        max_deliveries = self._limits.max_deliveries
        usual: list[Delivery] = []
        trimmed: list[bytes] = []
        unusual: list[Delivery] = []
        for delivery in deliveries:
            if delivery.fields is None:
                trimmed.append(delivery.entry_id)
            elif delivery.deliveries < max_deliveries:
                usual.append(delivery)
            else:
                unusual.append(delivery)
        if usual:
            fields: list[Fields] = [delivery.fields for delivery in usual]  # type: ignore[misc]
            entry_ids = [delivery.entry_id for delivery in usual]
            await self._take_page(entry_ids, fields, [d.deliveries for d in usual])
        if trimmed:
            self._metrics.lost_trimmed.inc(len(trimmed))
            log.error("%d pending entries were trimmed from the stream unstored", len(trimmed))
            await self._consumer.ack(trimmed)
        for delivery in unusual:
            await self._accept_unusual(delivery)

    async def _take_page(
        self,
        entry_ids: list[bytes],
        fields: list[Fields],
        counts: list[int] | None = None,
        opened_at: float | None = None,
    ) -> None:
        """Decode a page of entries in one go (``page_decoder``) into the batcher; park
        the unreadable ones."""
        page = decode_page(entry_ids, fields)
        block = page.block
        if len(block) and (full := self._batcher.add(block, len(block), opened_at)):
            await self._hand_over(full)
        for index, exc in page.unreadable:
            count = counts[index] if counts else 1
            await self._dead_letters.park(
                entry_ids[index], fields[index], ParkReason.UNREADABLE, str(exc), count
            )

    async def _accept_unusual(self, delivery: Delivery) -> None:
        """An entry on its last allowed delivery, or past it."""
        entry_id, fields, count = delivery
        assert fields is not None
        if count > self._limits.max_deliveries:
            error = f"delivered {count} times without being stored"
            await self._dead_letters.park(
                entry_id, fields, ParkReason.TOO_MANY_DELIVERIES, error, count
            )
            return
        try:
            row = decode_entry(entry_id, fields)
        except UnreadableEvent as exc:
            await self._dead_letters.park(entry_id, fields, ParkReason.UNREADABLE, str(exc), count)
            return
        # stored alone, so it cannot sink a whole batch
        await self._hand_over(
            Batch([RowBlock.from_rows([row])], FlushReason.ALONE, time.monotonic())
        )

    async def _hand_over(self, batch: Batch[RowBlock] | None) -> None:
        """Queue ``batch`` for storing; fails loudly if the storing task has died."""
        assert self._storing is not None
        put = asyncio.ensure_future(self._queue.put(batch))
        done, _ = await asyncio.wait({put, self._storing}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            self._storing.result()  # raises the storing task's error
            raise RuntimeError("the storing task ended early")

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
