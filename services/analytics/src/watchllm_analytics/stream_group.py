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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from watchllm_shared.redis_io import ensure_consumer_group

Fields = dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Delivery:
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
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._reclaim_idle_ms = reclaim_idle_ms

    async def ensure_group(self) -> None:
        await ensure_consumer_group(self.redis, self.stream, self.group)

    async def read_new(self, count: int, block_ms: int) -> list[Delivery]:
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=max(1, block_ms)
        )
        if not reply:
            return []
        return [Delivery(entry_id, fields, 1) for entry_id, fields in reply[0][1]]

    async def read_own_pending(self, after: bytes, count: int) -> list[Delivery]:
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: after}, count=count
        )
        entries = reply[0][1] if reply else []
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
            await self.redis.xack(self.stream, self.group, *entry_ids)

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
