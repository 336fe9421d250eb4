"""Authenticate WatchLLM keys, with an in-process cache of lookups.

- The key comes from ``Authorization: Bearer lgw_…`` or ``x-api-key: lgw_…``.
  Missing or malformed → 401 before any lookup; unknown → 401; revoked or past its
  rotation grace → 403 (``KeyRevoked``, which carries the key's grant: the refused
  request is still recorded under its project and key, a signal worth seeing there).
- Lookups are cached for ``key_cache_ttl_seconds`` (default 0.5 s): that bound is how
  fast a revocation reaches every replica, with no cross-replica messaging to lose.
  Keys that exist (active or not) live in a cache of ``_MAX_GRANTS`` entries, least
  recently *used* evicted first; unknown keys in a separate, smaller one
  (``_MAX_MISSES``), so a flood of random well-formed keys never evicts a real one.
- Concurrent requests for one key share a single Postgres query. The query runs in a
  task of its own: a request that goes away (client hung up, shutdown) does not take
  the answer away from the others waiting for it.
- Every query has a deadline of ``key_lookup_timeout_seconds`` (default 1 s; the pool
  in ``runtime.py`` also has a 5 s connect timeout), so a hung Postgres costs a request
  at most that.
- Postgres down, refusing or past the deadline: a key seen within
  ``key_cache_stale_seconds`` keeps its last answer (availability over freshness, logged
  once per outage); a key never seen gets 503 ``auth_unavailable``. During the outage
  requests get that answer at once: one query at a time probes Postgres, at most every
  ``_PROBE_EVERY_SECONDS``, and its success ends the outage. The request that starts
  the probe waits for it (at most the deadline) only when it has no earlier answer to
  fall back on, i.e. when it would get a 503 anyway.
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
from watchllm_shared.deadline import Deadline

log = logging.getLogger(__name__)

_MAX_GRANTS = 100_000
_MAX_MISSES = 10_000
_PROBE_EVERY_SECONDS = 0.1

_OUTAGE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


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


class KeyRevoked(GatewayError):
    """403 for a key that exists but no longer works, with its grant (for the event)."""

    def __init__(self, grant: KeyGrant) -> None:
        super().__init__(403, "key_revoked", "This API key has been revoked.")
        self.grant = grant


class KeyAuthenticator:
    def __init__(
        self,
        store: AccountStore,
        metrics: GatewayMetrics,
        ttl: float,
        stale: float,
        timeout: float = 1.0,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._ttl = ttl
        self._stale = stale
        self._timeout = timeout
        self._grants: OrderedDict[bytes, _Entry] = OrderedDict()  # keys that exist
        self._misses: OrderedDict[bytes, _Entry] = OrderedDict()  # unknown keys
        self._inflight: dict[bytes, asyncio.Task[KeyGrant | None]] = {}
        self._failing = False  # an outage is on: answer at once, probe in the background
        self._next_probe = 0.0
        self._probe: asyncio.Task[KeyGrant | None] | None = None
        self._answered_at = 0.0  # when Postgres last answered a lookup
        self._cache_hits = metrics.key_lookups.labels("cache")  # bound once: hot path

    async def authenticate(self, key: str) -> KeyGrant:
        grant = await self._lookup(hash_key(key))
        if grant is None:
            raise GatewayError(401, "invalid_api_key", "Incorrect API key provided.")
        if not grant.active:
            raise KeyRevoked(grant)
        return grant

    async def _lookup(self, key_hash: bytes) -> KeyGrant | None:
        entry = self._cached(key_hash)
        now = time.monotonic()
        if entry is not None and now - entry.fetched_at < self._ttl:
            self._cache_hits.inc()
            return entry.grant
        query = self._inflight.get(key_hash)
        if self._failing:  # answer at once, no wait on a dead database; maybe probe it
            if query is not None or self._probe is not None or now < self._next_probe:
                return self._during_outage(entry, None)
            query = self._probe = self._start_query(key_hash)
            self._next_probe = now + _PROBE_EVERY_SECONDS
            if entry is not None and now - entry.fetched_at < self._stale:
                return self._during_outage(entry, None)  # the probe goes on without us
            # nothing to fall back on but a 503: wait for the probe, it may succeed
        elif query is None:
            query = self._start_query(key_hash)
        try:
            # A deadline of our own: a query cancelled on a hung database can take long
            # to give its connection back. shield: a waiter that goes away (client gone)
            # or gives up leaves the query running for the others.
            async with Deadline(self._timeout):
                return await asyncio.shield(query)
        except _OUTAGE_ERRORS as exc:
            self._outage_began(exc, since=now)
            return self._during_outage(self._cached(key_hash), exc)

    def _cached(self, key_hash: bytes) -> _Entry | None:
        entry = self._grants.get(key_hash)
        if entry is not None:
            self._grants.move_to_end(key_hash)  # least recently used goes first
            return entry
        return self._misses.get(key_hash)

    def _start_query(self, key_hash: bytes) -> asyncio.Task[KeyGrant | None]:
        query = asyncio.get_running_loop().create_task(self._query(key_hash))
        self._inflight[key_hash] = query  # also the strong reference the task needs

        def done(task: asyncio.Task[KeyGrant | None]) -> None:
            if self._inflight.get(key_hash) is task:
                del self._inflight[key_hash]
            if self._probe is task:
                self._probe = None
            if not task.cancelled():
                task.exception()  # retrieved: each waiter handles it, maybe none is left

        query.add_done_callback(done)
        return query

    async def _query(self, key_hash: bytes) -> KeyGrant | None:
        started = time.monotonic()
        try:
            async with Deadline(self._timeout):  # also bounds the wait for a pool slot
                grant = await self._store.find_grant(key_hash)
        except _OUTAGE_ERRORS as exc:
            self._outage_began(exc, since=started)
            raise
        self._answered_at = time.monotonic()
        if self._failing:
            log.warning("key lookups recovered: Postgres answers again")
            self._failing = False
        self._metrics.key_lookups.labels("database").inc()
        self._remember(key_hash, grant)
        return grant

    def _outage_began(self, exc: BaseException, since: float) -> None:
        if since < self._answered_at:
            return  # Postgres answered a later query: this failure is old news
        if not self._failing:
            log.error("key lookups failing, Postgres unreachable: %s: %s", type(exc).__name__,
                      str(exc) or f"no answer within {self._timeout:g} s")  # fmt: skip
            self._failing = True
        self._next_probe = time.monotonic() + _PROBE_EVERY_SECONDS

    def _during_outage(self, previous: _Entry | None, exc: BaseException | None) -> KeyGrant | None:
        if previous is not None and time.monotonic() - previous.fetched_at < self._stale:
            self._metrics.key_lookups.labels("stale").inc()
            return previous.grant
        self._metrics.key_lookups.labels("unavailable").inc()
        raise GatewayError(
            503, "auth_unavailable", "The key store is unavailable; retry shortly."
        ) from exc

    def _remember(self, key_hash: bytes, grant: KeyGrant | None) -> None:
        entry = _Entry(grant, time.monotonic())
        if grant is None:
            self._grants.pop(key_hash, None)
            cache, limit = self._misses, _MAX_MISSES
        else:
            self._misses.pop(key_hash, None)
            cache, limit = self._grants, _MAX_GRANTS
        cache[key_hash] = entry
        cache.move_to_end(key_hash)
        while len(cache) > limit:
            cache.popitem(last=False)
