"""Publishes to a Redis Stream off the request path: request-completed events, and the
answers to store in the cache.

Handlers call ``publish`` after the response is sent (a non-blocking enqueue); one
background task drains the queue in pipelined batches of XADD with an approximate
MAXLEN, sent as ``PackedCommands`` (one event's XADD through a redis-py pipeline cost
~250 µs of CPU, packed by hiredis ~65: at 200 requests/s most batches hold one event).
Failure modes:
- Redis slow or down: the batch is kept and retried with capped exponential backoff;
  events wait in memory (``watchllm_events_buffered``), none is lost while the buffer
  has room. The outage is logged once and its end once.
- Buffer full (``event_buffer_size``; Redis down for a long time under load): new
  events are dropped and counted in ``watchllm_events_dropped_total``; memory stays
  bounded and the caller is never slowed.
- Shutdown: ``close`` keeps draining until the queue is empty or its timeout passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

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
        self._stream = stream
        self._maxlen = maxlen
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"publisher:{self._stream}")

    def publish(self, fields: Fields) -> None:
        try:
            self._queue.put_nowait(fields)
        except asyncio.QueueFull:
            self._metrics.dropped.inc()
            return
        self._metrics.buffered.set(self._queue.qsize())

    async def close(self, flush_seconds: float = 5.0) -> None:
        """Flush what is buffered (for up to ``flush_seconds``), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), flush_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if not self._queue.empty():
            log.error(
                "shutdown with %d entries not written to %s", self._queue.qsize(), self._stream
            )

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < _BATCH:
                await asyncio.sleep(_LINGER_SECONDS)
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write_until_done(batch)
            for _ in batch:
                self._queue.task_done()
            self._metrics.buffered.set(self._queue.qsize())

    async def _write_until_done(self, batch: list[Fields]) -> None:
        backoff = 0.05
        while True:
            try:
                await self._write(batch)
            except (RedisError, OSError, TimeoutError) as exc:
                self._metrics.errors.inc()
                if not self._failing:
                    log.error("cannot write to %s, buffering: %s", self._stream, exc)
                    self._failing = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                continue
            if self._failing:
                log.warning("writing to %s again", self._stream)
                self._failing = False
            self._metrics.published.inc(len(batch))
            return

    async def _write(self, batch: list[Fields]) -> None:
        head = ("XADD", self._stream, "MAXLEN", "~", self._maxlen, "*")
        commands = [(*head, *(item for pair in fields.items() for item in pair))
                    for fields in batch]  # fmt: skip
        async with asyncio.timeout(_WRITE_TIMEOUT_SECONDS):
            await self._commands.call_many(commands)
