"""What every stream consumer group needs besides its own handling: a loop that
survives Redis going away, taking over the entries a dead consumer left pending, and
parking the ones that keep failing.

- ``consume_forever``: ensure the group, run one read round after another, back off
  (capped, logged) while Redis fails; with a ``stopping`` event, end between rounds
  once it is set, so what a round read is handled and acknowledged (``stopping``).
- ``claim_stale``: XAUTOCLAIM entries idle longer than ``min_idle_ms`` (a consumer died
  or is stuck) and split them by delivery count: those still worth another try, and
  those delivered more than ``max_deliveries`` times (poison: never let one message
  wedge the group).
- ``dead_letter``: copy an entry with its error to ``<stream>.dlq``, then acknowledge
  it. Nothing is dropped silently: the DLQ keeps the payload, the error, the source id
  and the group for an operator to inspect or replay.
- ``entry_ms``: when an entry was added, on Redis's clock (its id's milliseconds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from watchllm_shared.redis_io import ensure_consumer_group
from watchllm_shared.stopping import sleep_unless

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]


def entry_ms(entry_id: bytes) -> int:
    """When Redis added the entry (ms since the epoch, Redis's clock): its id is
    ``<ms>-<seq>``. Two streams number one millisecond independently, so only the
    milliseconds compare across streams."""
    return int(entry_id.partition(b"-")[0])


def dead_letter_stream(stream: str) -> str:
    return f"{stream}.dlq"


async def claim_stale(
    redis: aioredis.Redis,
    stream: str,
    group: str,
    consumer: str,
    min_idle_ms: int,
    max_deliveries: int,
    count: int,
) -> tuple[list[Entry], list[Entry]]:
    """(entries to retry, entries past ``max_deliveries``), both now owned by ``consumer``.

    Delivery counts are read entry by entry (one pipelined XPENDING each): a range query
    over the claimed ids would also list entries other consumers hold between them, and
    with a count of the claimed entries it ran out before reaching the later ones, whose
    counts then read as 0 — a poison entry retried forever instead of dead-lettered.
    """
    reply: Any = await redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
    entries: list[Entry] = [(entry_id, fields) for entry_id, fields in reply[1] if fields]
    if not entries:
        return [], []
    async with redis.pipeline(transaction=False) as pipe:
        for entry_id, _ in entries:
            pipe.xpending_range(stream, group, min=entry_id, max=entry_id, count=1,
                                consumername=consumer)  # fmt: skip
        replies: list[Any] = await pipe.execute()
    deliveries = {p["message_id"]: int(p["times_delivered"]) for reply_ in replies for p in reply_}
    retry = [e for e in entries if deliveries.get(e[0], 0) <= max_deliveries]
    exhausted = [e for e in entries if deliveries.get(e[0], 0) > max_deliveries]
    return retry, exhausted


async def dead_letter(
    redis: aioredis.Redis, stream: str, group: str, entry: Entry, error: str
) -> None:
    entry_id, fields = entry
    record = {**fields, b"error": error.encode(), b"source_id": entry_id,
              b"group": group.encode()}  # fmt: skip
    await redis.xadd(dead_letter_stream(stream), record)  # type: ignore[arg-type]
    await redis.xack(stream, group, entry_id)


async def consume_forever(
    redis: aioredis.Redis,
    stream: str,
    group: str,
    step: Callable[[], Awaitable[None]],
    what: str,
    max_backoff_seconds: float = 5.0,
    stopping: asyncio.Event | None = None,
) -> None:
    """Create the group if needed, then run ``step`` (one read-and-handle round) until
    ``stopping`` is set (checked between rounds: a round is never cut short by it; see
    ``stopping``) or the task is cancelled. Redis errors pause the loop with capped
    exponential backoff, logged, ended early by ``stopping``; the group is re-ensured
    afterwards (Redis may have come back empty)."""
    stopping = stopping or asyncio.Event()
    backoff = 0.1
    while not stopping.is_set():
        try:
            await ensure_consumer_group(redis, stream, group)
            while not stopping.is_set():
                await step()
                backoff = 0.1
        except (RedisError, OSError) as exc:
            log.error("%s paused, Redis: %s", what, exc)
            await sleep_unless(stopping, backoff)
            backoff = min(backoff * 2, max_backoff_seconds)
