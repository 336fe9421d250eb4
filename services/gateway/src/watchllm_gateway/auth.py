"""Authenticate WatchLLM keys, with an in-process cache of lookups.

- The key comes from ``Authorization: Bearer lgw_…`` or ``x-api-key: lgw_…``.
  Missing or malformed → 401 before any lookup; unknown → 401; revoked or past its
  rotation grace → 403.
- Lookups (hits and misses) are cached for ``key_cache_ttl_seconds`` (default 0.5 s):
  that bound is how fast a revocation reaches every replica, with no cross-replica
  messaging to lose. Concurrent requests for one key share a single Postgres query.
- Postgres down: a key seen within ``key_cache_stale_seconds`` keeps its last answer
  (availability over freshness, logged once per outage); a key never seen gets 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import asyncpg

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_shared.accounts import AccountStore, KeyGrant
from watchllm_shared.accounts.keys import hash_key, looks_like_key

log = logging.getLogger(__name__)

_MAX_ENTRIES = 100_000


@dataclass(slots=True)
class _Entry:
    grant: KeyGrant | None
    fetched_at: float


def extract_key(authorization: str | None, x_api_key: str | None) -> str:
    candidate: str | None = None
    if x_api_key:
        candidate = x_api_key.strip()
    elif authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            candidate = value.strip()
    if not candidate:
        raise GatewayError(
            401,
            "missing_api_key",
            "No API key provided. Send 'Authorization: Bearer lgw_…' or 'x-api-key: lgw_…'.",
        )
    if not looks_like_key(candidate):
        raise GatewayError(401, "invalid_api_key", "Incorrect API key provided.")
    return candidate


class KeyAuthenticator:
    def __init__(
        self, store: AccountStore, metrics: GatewayMetrics, ttl: float, stale: float
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._ttl = ttl
        self._stale = stale
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[KeyGrant | None]] = {}
        self._outage_logged = False
        self._cache_hits = metrics.key_lookups.labels("cache")  # bound once: hot path

    async def authenticate(self, key: str) -> KeyGrant:
        grant = await self._lookup(hash_key(key))
        if grant is None:
            raise GatewayError(401, "invalid_api_key", "Incorrect API key provided.")
        if not grant.active:
            raise GatewayError(403, "key_revoked", "This API key has been revoked.")
        return grant

    async def _lookup(self, key_hash: bytes) -> KeyGrant | None:
        entry = self._cache.get(key_hash)
        now = time.monotonic()
        if entry is not None and now - entry.fetched_at < self._ttl:
            self._cache_hits.inc()
            return entry.grant
        pending = self._inflight.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyGrant | None] = asyncio.get_running_loop().create_future()
        self._inflight[key_hash] = future
        try:
            grant = await self._fetch(key_hash, entry)
            future.set_result(grant)
            return grant
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key_hash]

    async def _fetch(self, key_hash: bytes, previous: _Entry | None) -> KeyGrant | None:
        try:
            grant = await self._store.find_grant(key_hash)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            return self._during_outage(previous, exc)
        if self._outage_logged:
            log.warning("key lookups recovered: Postgres answers again")
            self._outage_logged = False
        self._metrics.key_lookups.labels("database").inc()
        self._remember(key_hash, grant)
        return grant

    def _during_outage(self, previous: _Entry | None, exc: BaseException) -> KeyGrant | None:
        if not self._outage_logged:
            log.error("key lookups failing, Postgres unreachable: %s", exc)
            self._outage_logged = True
        if previous is not None and time.monotonic() - previous.fetched_at < self._stale:
            self._metrics.key_lookups.labels("stale").inc()
            return previous.grant
        self._metrics.key_lookups.labels("unavailable").inc()
        raise GatewayError(
            503, "auth_unavailable", "The key store is unavailable; retry shortly."
        ) from exc

    def _remember(self, key_hash: bytes, grant: KeyGrant | None) -> None:
        self._cache[key_hash] = _Entry(grant, time.monotonic())
        self._cache.move_to_end(key_hash)
        while len(self._cache) > _MAX_ENTRIES:
            self._cache.popitem(last=False)
