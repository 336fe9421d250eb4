"""Publishes to a Redis Stream off the request path: request-completed events, and the
answers to store in the cache.

Handlers call ``publish`` after the response is sent (a non-blocking enqueue); one
background task drains the queue in pipelined batches of XADD with an approximate
MAXLEN, sent as ``PackedCommands`` (one event's XADD through a redis-py pipeline cost
~250 µs of CPU, packed by hiredis ~65: at 200 requests/s most batches hold one event).
Failure modes:
- Redis slow or down: the batch is kept (on the publisher, "in flight") and retried with
  capped exponential backoff; events wait in memory (``watchllm_events_buffered``: the
  queue plus the batch in flight), none is lost while the buffer has room. The outage
  is logged once and its end once.
- Some XADDs of a batch fail with an error reply (e.g. Redis at ``maxmemory`` with
  ``noeviction``: OOM) while the others ran: only the failed ones are kept and retried,
  so no event is written twice. A connection error or timeout mid-batch leaves unknown
  which XADDs ran, so the whole batch is sent again and some events may be written
  twice. The request-completed stream's consumers drop those duplicates by event id
  (analytics' duplicate check, the limiter's idempotent charge); the cache store stream
  (``CACHE_STORE_STREAM``) has no event id and is not deduplicated: a duplicate store
  is processed again (the same entry written and indexed once more).
- Buffer full (``event_buffer_size``; Redis down for a long time under load): new
  events are dropped and counted in ``watchllm_events_dropped_total``; memory stays
  bounded and the caller is never slowed.
- Shutdown: ``close`` keeps draining until the queue is empty or its timeout passes; a
  writer waiting out a backoff tries once more at once. Whatever is still unwritten
  then (the batch in flight and the queue) is counted in
  ``watchllm_events_dropped_total`` and logged in one line. A write cut off by the
  timeout counts its whole batch as dropped, though Redis may have taken some of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from watchllm_shared.redis_packed import PackedCommands

log = logging.getLogger(__name__)

_BATCH = 500
_MAX_BACKOFF_SECONDS = 2.0
# Wait this long for more events before writing a small batch: one pipelined round
# trip per few milliseconds instead of one per request (py-spy showed ~14% of the
# gateway's CPU in per-event writes at 300 requests/s). Events are off the request
# path, so the delay costs the caller nothing.
_LINGER_SECONDS = 0.005
_WRITE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class PublisherMetrics:
    published: Any  # Counter
    dropped: Any  # Counter
    buffered: Any  # Gauge
    errors: Any  # Counter


Fields = Mapping[str, bytes | str]


class StreamPublisher:
    def __init__(
        self,
        commands: PackedCommands,
        metrics: PublisherMetrics,
        buffer_size: int,
        stream: str,
        maxlen: int,
    ) -> None:
        self._commands = commands
        self._metrics = metrics
        self._queue: asyncio.Queue[Fields] = asyncio.Queue(buffer_size)
        # Taken off the queue, not yet written: the batch being written or retried.
        self._in_flight: list[Fields] = []
        self._stream = stream
        self._maxlen = maxlen
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._closing = asyncio.Event()  # set by close: a backoff wait ends at once

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"publisher:{self._stream}")

    def publish(self, fields: Fields) -> None:
        try:
            self._queue.put_nowait(fields)
        except asyncio.QueueFull:
            self._metrics.dropped.inc()
            return
        self._set_buffered()

    async def close(self, flush_seconds: float = 5.0) -> None:
        """Flush what is buffered (for up to ``flush_seconds``), then stop; what could
        not be written is counted as dropped and logged."""
        if self._task is None:
            return
        self._closing.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), flush_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        left = len(self._in_flight) + self._queue.qsize()
        self._in_flight = []
        while not self._queue.empty():
            self._queue.get_nowait()
        self._set_buffered()
        if left:
            self._metrics.dropped.inc(left)
            log.error("shutdown with %d entries not written to %s: dropped", left, self._stream)

    def _set_buffered(self) -> None:
        self._metrics.buffered.set(self._queue.qsize() + len(self._in_flight))

    async def _run(self) -> None:
        while True:
            self._in_flight = batch = [await self._queue.get()]
            if self._queue.qsize() < _BATCH:
                await asyncio.sleep(_LINGER_SECONDS)
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            taken = len(batch)
            await self._write_until_done()
            for _ in range(taken):
                self._queue.task_done()
            self._set_buffered()

    async def _write_until_done(self) -> None:
        """Write ``_in_flight`` until it is empty: on a partial failure only the events
        whose XADD failed stay in flight."""
        backoff = 0.05
        while True:
            try:
                failed, error = await self._write(self._in_flight)
            except (RedisError, OSError, TimeoutError) as exc:
                failed, error = self._in_flight, exc
            written = len(self._in_flight) - len(failed)
            if written:
                self._metrics.published.inc(written)
                self._in_flight = failed
                self._set_buffered()
            if not failed:
                if self._failing:
                    log.warning("writing to %s again", self._stream)
                    self._failing = False
                return
            self._metrics.errors.inc()
            if not self._failing:
                log.error("cannot write to %s, buffering: %s", self._stream, error)
                self._failing = True
            if self._closing.is_set():
                await asyncio.sleep(backoff)
            else:  # close starting during the wait ends it: one more try at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    async def _write(self, batch: list[Fields]) -> tuple[list[Fields], Exception | None]:
        """XADD ``batch`` in one pipeline; the events whose XADD failed with an error
        reply, and the first such error."""
        head = ("XADD", self._stream, "MAXLEN", "~", self._maxlen, "*")
        commands = [(*head, *(item for pair in fields.items() for item in pair))
                    for fields in batch]  # fmt: skip
        async with asyncio.timeout(_WRITE_TIMEOUT_SECONDS):
            replies = await self._commands.call_many(commands, raise_errors=False)
        failed = [f for f, r in zip(batch, replies, strict=True) if isinstance(r, ResponseError)]
        errors = [r for r in replies if isinstance(r, ResponseError)]
        return failed, errors[0] if errors else None
