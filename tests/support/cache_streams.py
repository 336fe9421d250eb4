"""Whether the cache service has finished storing one answer, read from its store
stream the way its consumer group sees it.

An answer is stored in two steps (``watchllm_cache.service.stores``): the exact entry
is written first, then the question is indexed for the semantic layer, and only then
is the store message acknowledged. So the exact key existing is not yet a semantic hit;
the message acknowledged is both.
"""

from __future__ import annotations

import time

import redis

from watchllm_shared.contracts.cache import CACHE_STORE_GROUP, CACHE_STORE_STREAM

_PAGE = 500
_RECENT_MS = 600_000  # a store is published right after its answer: search this far back


def _stream_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def store_id(client: redis.Redis, request_id: str) -> bytes | None:
    """The stream id of the store the gateway published for ``request_id``, if any yet
    (newest first, among the last ten minutes' stores)."""
    needle = f'"request_id":"{request_id}"'.encode()
    newest = "+"
    oldest = str(int(time.time() * 1000) - _RECENT_MS)
    while True:
        page = client.xrevrange(CACHE_STORE_STREAM, max=newest, min=oldest, count=_PAGE)
        for entry_id, fields in page:
            if needle in fields.get(b"data", b""):
                return entry_id
        if len(page) < _PAGE:
            return None
        newest = "(" + page[-1][0].decode()


def store_done(client: redis.Redis, entry_id: bytes) -> bool:
    """True once the cache group was handed the store ``entry_id`` and acknowledged it."""
    groups = client.xinfo_groups(CACHE_STORE_STREAM) if client.exists(CACHE_STORE_STREAM) else []
    delivered = next((g["last-delivered-id"] for g in groups
                      if g["name"] in (CACHE_STORE_GROUP, CACHE_STORE_GROUP.encode())),
                     None)  # fmt: skip
    if delivered is None or _stream_id(delivered) < _stream_id(entry_id):
        return False
    pending = client.xpending_range(CACHE_STORE_STREAM, CACHE_STORE_GROUP, entry_id, entry_id, 1)
    return not pending
