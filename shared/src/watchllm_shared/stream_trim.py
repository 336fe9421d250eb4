"""Trimming a stream to what its consumer groups still need.

A stream keeps an entry after every group has read and acknowledged it, until MAXLEN
pushes it out: the events stream (MAXLEN ~1,000,000) held a million processed events,
and anything a caller could put into one stayed with them. ``trim_processed`` removes
the entries every group is done with: it trims to the oldest entry any group still
needs, which is its oldest pending entry (delivered, not acknowledged) or, with none
pending, the next one it has not read (everything up to ``last-delivered-id`` was
read and acknowledged).

``groups`` are the groups that must have processed an entry before it goes. A group
created later (with id ``0``) reads the stream from its start: until every one of them
exists, nothing is trimmed (MAXLEN, the safety cap, still bounds the stream). Groups
that exist beyond those (an operator's own) are waited for too.

Trimming is exact (``MINID``, not ``~``): Redis frees whole nodes at once and rewrites
only the one at the boundary, and an exact trim is what a test can check.

Positions only move forward, so reading them before the XTRIM is conservative; only an
operator moving a group back (``XGROUP SETID``) can want what was already trimmed. XTRIM
is allowed while Redis is at ``maxmemory``: trimming is how a full Redis gets room back.

``keep_trimmed`` runs it every ``TRIM_EVERY_SECONDS`` in a consumer service (the
limiter for the events stream, the cache service for its asks); several replicas doing
it is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger(__name__)

TRIM_EVERY_SECONDS = 1.0


def _id(value: Any) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else str(value)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def trim_processed(
    redis: aioredis.Redis, stream: str, groups: Collection[str]
) -> tuple[int, frozenset[str]]:
    """Remove the entries every group has processed: (how many went, the groups of
    ``groups`` that do not exist yet; while there are any, nothing goes)."""
    try:
        infos: list[dict[str, Any]] = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return 0, frozenset(groups)
        raise
    existing = {_name(info["name"]): info for info in infos}
    missing = frozenset(groups) - existing.keys()
    if missing or not existing:
        return 0, missing
    needed: list[tuple[int, int]] = []
    for name, info in existing.items():
        summary: dict[str, Any] = await redis.xpending(stream, name) if info["pending"] else {}
        if summary.get("min") is not None:
            needed.append(_id(summary["min"]))  # its oldest entry read, not acknowledged
        else:
            ms, seq = _id(info["last-delivered-id"])
            needed.append((ms, seq + 1))  # the next one; ``0-0``: nothing read yet
    ms, seq = min(needed)
    trimmed: int = await redis.xtrim(stream, minid=f"{ms}-{seq}", approximate=False)
    return trimmed, missing


async def keep_trimmed(
    redis: aioredis.Redis, stream: str, groups: Collection[str], what: str
) -> None:
    """``trim_processed`` every ``TRIM_EVERY_SECONDS`` until cancelled. Groups missing
    and Redis errors are logged when they begin, not every round."""
    failing = False
    waiting_for: frozenset[str] = frozenset()
    while True:
        try:
            _, missing = await trim_processed(redis, stream, groups)
            if missing and missing != waiting_for:
                log.info("%s: not trimmed until these groups exist: %s", what, sorted(missing))
            waiting_for, failing = missing, False
        except (RedisError, OSError) as exc:
            if not failing:
                log.warning("%s: trimming paused, Redis: %s", what, exc)
            failing = True
        await asyncio.sleep(TRIM_EVERY_SECONDS)
