"""Publishes to a Redis Stream off the request path: request-completed events, and the
answers to store in the cache.

Handlers call ``publish`` after the response is sent (a non-blocking enqueue); one
background task drains the queue in pipelined batches of XADD with an approximate
MAXLEN, sent as ``PackedCommands`` (one event's XADD through a redis-py pipeline cost
~250 µs of CPU, packed by hiredis ~65: at 200 requests/s most batches hold one event).
An idle writer writes at once; events published while a write is in flight make the
next batch, so batches grow with the load and no timer holds an event back.

Delivery window (the exactly-once promise's one gap, ARCHITECTURE.md "Exactly one row
per event"): an event lives only in this process's memory from the answer's last byte
until its XADD is written to the socket (the kernel delivers what was written, also
after a kill): the rest of that turn of the event loop. A SIGKILL in between loses it.
``tests/bench/gateway_sigkill.py`` measures it, killing a gateway under 200 requests/s
and looking up every answered request: with small batches waiting 5 ms for company,
151 events lost in 80 kills (56 kills lost some); now 28 in 80 (11 kills), most of an
answer sent within 0.2 ms of the kill, the rest when the machine (load 9 on 2 cores)
left the process unscheduled for 20-75 ms right after answering. Publishing before the
last byte would not close it: one task runs at a time, so the XADD would still go out
after the answer, the event's latency would lose the send, and building the event
there would cost each answer ~15 µs. A clean stop (SIGTERM) loses nothing while Redis
answers: see Shutdown below.

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
- Shutdown: ``close_all`` flushes every publisher at once, under one deadline (the
  gateway's share of ``gateway_shutdown_seconds`` for flushing, see ``settings``), so two
  publishers never take twice the time: one after the other, 5 s each, they outlasted
  ``watchllm up``'s 10 s grace with Redis gone, and the kill cut the flush short with
  nothing logged. Each keeps draining until its queue is empty (also of events that
  requests cancelled by the server's shutdown record as they unwind) or the deadline
  passes; a writer waiting out a backoff tries once more at once. Whatever is still
  unwritten then (the batch in flight and the queue), and anything published after
  ``close``, is counted in ``watchllm_events_dropped_total`` (``…_cache_stores_dropped…``)
  and logged with its count and Redis's last error. A write cut off by the deadline
  counts its whole batch as dropped, though Redis may have taken some of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from watchllm_shared.redis_packed import PackedCommands
from watchllm_shared.stopping import stop_tasks

log = logging.getLogger(__name__)

_BATCH = 500
_MAX_BACKOFF_SECONDS = 2.0
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
        self._last_error: BaseException | None = None
        self._closing = asyncio.Event()  # set by close: a backoff wait ends at once
        self._closed = False
        self.dropped = 0  # since start, for the state report (``state_report``)

    @property
    def buffered(self) -> int:
        """Entries in memory, not yet written: the queue and the batch in flight."""
        return self._queue.qsize() + len(self._in_flight)

    @property
    def write_error(self) -> str | None:
        """Why Redis does not take the batch now (None while writes succeed)."""
        return _describe(self._last_error) if self._failing else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"publisher:{self._stream}")

    def publish(self, fields: Fields) -> None:
        if self._closed:  # a request that finished after the flush: nobody will write it
            self._metrics.dropped.inc()
            self.dropped += 1
            log.error("shutdown: an entry for %s came after the flush: dropped", self._stream)
            return
        try:
            self._queue.put_nowait(fields)
        except asyncio.QueueFull:
            self._metrics.dropped.inc()
            self.dropped += 1
            return
        self._set_buffered()

    async def close(self, flush_seconds: float = 2.0) -> None:
        """Flush what is buffered (for up to ``flush_seconds``), then stop; what could
        not be written is counted as dropped and logged with its count."""
        if self._task is None:
            return
        self._closing.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_seconds):
                await self._drain()
        await stop_tasks([self._task], 0)  # cancelled until it ends
        self._task = None
        self._closed = True
        left = len(self._in_flight) + self._queue.qsize()
        self._in_flight = []
        while not self._queue.empty():
            self._queue.get_nowait()
        self._set_buffered()
        if left:
            self._metrics.dropped.inc(left)
            self.dropped += left
            log.error(
                "shutdown: %d entries not written to %s within the %.1f s flush: dropped"
                " (Redis: %s)", left, self._stream, flush_seconds,
                _describe(self._last_error) if self._failing else "slow",
            )  # fmt: skip

    async def _drain(self) -> None:
        """Until the queue is empty and stays so for one pass of the loop: requests the
        server cancelled at its shutdown publish their events as they unwind."""
        while True:
            await self._queue.join()
            await asyncio.sleep(0)
            if self._queue.empty():
                return

    def _set_buffered(self) -> None:
        self._metrics.buffered.set(self._queue.qsize() + len(self._in_flight))

    async def _run(self) -> None:
        while True:
            # No linger for company: what waits is what arrived during the last write.
            self._in_flight = batch = [await self._queue.get()]
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
            self._last_error = error
            if not self._failing:
                log.error("cannot write to %s, buffering: %s", self._stream, _describe(error))
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


async def close_all(publishers: Sequence[StreamPublisher], flush_seconds: float) -> None:
    """Flush every publisher at once, all within ``flush_seconds`` (one deadline shared,
    not one each); see the module docstring."""
    await asyncio.gather(*(publisher.close(flush_seconds) for publisher in publishers))


def _describe(error: BaseException | None) -> str:
    """An error for a log line; a ``TimeoutError`` has no text of its own."""
    if error is None:
        return "unknown error"
    return str(error) or type(error).__name__
