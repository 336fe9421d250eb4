"""One consumer of a Redis Streams consumer group, on redis-py directly.

What each call guarantees (the pipeline decides when to call them):
- ``read_new``: XREADGROUP ``>``; entries become pending for this consumer until acked.
- ``read_own_pending``: this consumer's pending entries (XREADGROUP from an id), the
  ones a previous process of the same name read and never acknowledged.
- ``reclaim_stale``: entries pending for at least ``reclaim_idle_ms`` at any consumer
  (a dead one, usually) are taken over with XAUTOCLAIM.
- Every re-read entry carries its delivery count (XPENDING), so the pipeline can park
  an entry that keeps failing instead of retrying it forever.
- ``renew``: XCLAIM JUSTID to ourselves resets the idle time of entries still being
  worked on (a batch retrying while ClickHouse is down), so no one else reclaims them;
  it does not count as a delivery.
- Entries trimmed from the stream (MAXLEN) while pending come back without fields;
  they are acknowledged and counted as lost, since nothing can bring them back.

Redis errors propagate as ``redis.RedisError``; callers back off and retry.

XREADGROUP replies are taken as hiredis parsed them (a client of our own on the same
pool, without redis-py's reply callback, which builds a tuple and a dict per entry:
~3 µs an entry, the budget for everything at 50,000 events/s is 20); new entries come
back as two lists (``NewEntries``), not an object each. XACK goes through
``watchllm_shared.redis_packed`` (packed by hiredis in C: redis-py packs argument by
argument in Python, ~0.4 µs an id, more than the rest of a batch's XACK); call
``aclose`` when done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from watchllm_shared.redis_io import ensure_consumer_group
from watchllm_shared.redis_packed import PackedCommands

Fields = dict[bytes, bytes]


class NewEntries(NamedTuple):
    """A page of entries read for the first time (each delivered once), as two lists."""

    entry_ids: list[bytes]
    fields: list[Fields]  # {} for an entry without fields (XADD never writes one)


class Delivery(NamedTuple):
    entry_id: bytes
    fields: Fields | None  # None: trimmed from the stream while pending
    deliveries: int  # including this one


@dataclass(frozen=True, slots=True)
class GroupLag:
    undelivered: int | None  # entries not yet read by the group (None: Redis cannot tell)
    pending: int  # read, not yet acknowledged


class GroupConsumer:
    def __init__(
        self, redis: aioredis.Redis, stream: str, group: str, consumer: str, reclaim_idle_ms: int
    ) -> None:
        self.redis = redis
        self._reader = aioredis.Redis(connection_pool=redis.connection_pool)  # pool not owned
        self._reader.set_response_callback("XREADGROUP", _as_parsed)
        self._commands = PackedCommands(redis, max_connections=4)
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._reclaim_idle_ms = reclaim_idle_ms

    async def ensure_group(self) -> None:
        await ensure_consumer_group(self.redis, self.stream, self.group)

    async def read_new(self, count: int, block_ms: int) -> NewEntries:
        reply: Any = await self._reader.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=max(1, block_ms)
        )
        entries = _entries(reply)
        fields = [
            {raw[0]: raw[1]} if raw and len(raw) == 2 else _fields(raw) or {} for _, raw in entries
        ]
        return NewEntries([entry[0] for entry in entries], fields)

    async def read_own_pending(self, after: bytes, count: int) -> list[Delivery]:
        reply: Any = await self._reader.xreadgroup(
            self.group, self.consumer, {self.stream: after}, count=count
        )
        entries = [(entry_id, _fields(raw)) for entry_id, raw in _entries(reply)]
        return await self._with_delivery_counts(entries)

    async def reclaim_stale(self, cursor: bytes, count: int) -> tuple[bytes, list[Delivery]]:
        """One XAUTOCLAIM page: the next cursor (``0-0`` when done) and what was claimed."""
        reply: Any = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, self._reclaim_idle_ms, cursor, count=count
        )
        next_cursor, entries = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        claimed = await self._with_delivery_counts(entries)
        return next_cursor, claimed + [Delivery(entry_id, None, 0) for entry_id in deleted]

    async def ack(self, entry_ids: list[bytes]) -> None:
        if entry_ids:
            await self._commands.call("XACK", self.stream, self.group, *entry_ids)

    async def aclose(self) -> None:
        await self._commands.aclose()

    async def renew(self, entry_ids: list[bytes]) -> None:
        if entry_ids:
            ids: list[Any] = list(entry_ids)
            await self.redis.xclaim(self.stream, self.group, self.consumer, 0, ids, justid=True)

    async def lag(self) -> GroupLag:
        try:
            groups: Any = await self.redis.xinfo_groups(self.stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return GroupLag(None, 0)  # nothing published yet
            raise
        for info in groups:
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                undelivered = info.get("lag")
                return GroupLag(
                    None if undelivered is None else int(undelivered), int(info["pending"])
                )
        return GroupLag(None, 0)

    async def _with_delivery_counts(self, entries: list[Any]) -> list[Delivery]:
        if not entries:
            return []
        ids = [entry_id for entry_id, _ in entries]
        pending: Any = await self.redis.xpending_range(
            self.stream, self.group, min=ids[0], max=ids[-1], count=len(ids) * 2 + 100,
            consumername=self.consumer,
        )  # fmt: skip
        counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        return [
            Delivery(entry_id, fields or None, counts.get(entry_id, 1))
            for entry_id, fields in entries
        ]


def _as_parsed(response: Any, **options: Any) -> Any:
    return response


def _entries(reply: Any) -> list[Any]:
    """``[[id, [field, value, …] | nil], …]`` of one stream's XREADGROUP reply (RESP2 or 3)."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {stream: entries}
        return next(iter(reply.values()))
    return reply[0][1]  # type: ignore[no-any-return]


def _fields(raw: list[bytes] | None) -> Fields | None:
    """A flat field list as a dict; None for an entry trimmed while pending."""
    if not raw:
        return None
    if len(raw) == 2:
        return {raw[0]: raw[1]}
    return dict(zip(raw[::2], raw[1::2], strict=True))
