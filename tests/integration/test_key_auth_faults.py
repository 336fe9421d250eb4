"""The gateway's key lookups (``KeyAuthenticator``) against the real Postgres when it
misbehaves: hung (accepts TCP, never answers), refusing, or flooded with unknown keys,
and when a request sharing a lookup goes away."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.conftest import unique
from tests.support.freeze_proxy import FreezeProxy
from watchllm_gateway import auth as auth_module
from watchllm_gateway.auth import KeyAuthenticator
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_shared.accounts import AccountStore, KeyGrant, Plan
from watchllm_shared.accounts.keys import generate_key

pytestmark = pytest.mark.integration

T = TypeVar("T")

TTL = 0.5
STALE = 300.0
DEADLINE = 1.0  # key lookup deadline in these tests (the gateway's default)
# Bounds that hold on a machine several times slower, and still fail on what they
# catch: a request that waits for Postgres waits a whole deadline (more than AT_ONCE);
# one that is not bounded by the deadline waits for the pool's 5 s command timeout or
# for another lookup's deadline first (at least two deadlines, more than IN_TIME).
AT_ONCE = DEADLINE / 2  # an answer that did not wait for Postgres
IN_TIME = DEADLINE + 0.9  # the deadline plus scheduling, under two deadlines


def _with_address(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _gateway_pool(url: str) -> asyncpg.Pool:
    """The gateway's pool options (``runtime.open_runtime``)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url, min_size=0, max_size=10, command_timeout=5, timeout=5
    )
    return pool


async def _close(pool: asyncpg.Pool) -> None:
    """Close gracefully: connections still cancelling a query finish doing so."""
    try:
        await asyncio.wait_for(pool.close(), 10)
    except TimeoutError:
        pool.terminate()


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[FreezeProxy]:
    upstream = urlsplit(database_url)
    proxy = FreezeProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432)
    await proxy.start()
    yield proxy
    proxy.thaw()
    await proxy.close()


@pytest.fixture
async def proxied_store(database_url: str, proxy: FreezeProxy) -> AsyncIterator[AccountStore]:
    pool = await _gateway_pool(_with_address(database_url, "127.0.0.1", proxy.port))
    yield AccountStore(pool, actor="tests")
    proxy.thaw()
    await _close(pool)


def _authenticator(store: AccountStore, timeout: float = DEADLINE) -> KeyAuthenticator:
    return KeyAuthenticator(store, GatewayMetrics(), ttl=TTL, stale=STALE, timeout=timeout)


async def _new_key(store: AccountStore, project: str | None = None) -> str:
    if project is None:
        project = unique("authfault")
        await store.create_project(project, Plan.PRO)
    return (await store.create_key(project, "k")).secret


async def _timed(call: Awaitable[T]) -> tuple[float, T | BaseException]:
    started = time.monotonic()
    try:
        result: T | BaseException = await asyncio.wait_for(call, 30)
    except Exception as exc:
        result = exc
    return time.monotonic() - started, result


def _status(result: object) -> int | None:
    return result.status if isinstance(result, GatewayError) else None


# ---- a hung Postgres ----------------------------------------------------------------


async def test_hung_postgres_costs_at_most_the_deadline_then_answers_at_once(
    account_store: AccountStore, proxied_store: AccountStore, proxy: FreezeProxy
) -> None:
    seen = await _new_key(account_store)
    auth = _authenticator(proxied_store)
    assert (await auth.authenticate(seen)).active

    proxy.freeze()
    await asyncio.sleep(TTL + 0.1)  # past the TTL: the next lookup asks Postgres
    # unknown keys arriving first take every pool slot and would queue everyone else
    unknown = [asyncio.create_task(_timed(auth.authenticate(generate_key()))) for _ in range(12)]
    await asyncio.sleep(0.05)
    first_took, first = await _timed(auth.authenticate(seen))
    assert isinstance(first, KeyGrant) and first.active, first
    assert first_took < IN_TIME, f"the first request waited {first_took:.2f} s"
    for took, result in await asyncio.gather(*unknown):
        assert _status(result) == 503, result
        assert took < IN_TIME, f"an unknown key waited {took:.2f} s for its 503"

    for _ in range(8):  # the outage goes on: nobody waits for Postgres again
        await asyncio.sleep(0.2)
        took, result = await _timed(auth.authenticate(seen))
        assert isinstance(result, KeyGrant), result
        assert took < AT_ONCE, f"a request for a known key waited {took:.2f} s"
        took, result = await _timed(auth.authenticate(generate_key()))  # may be the probe
        assert _status(result) == 503 and took < IN_TIME, (result, took)

    # Postgres answers again: a key never seen before works, a revocation is seen
    never_seen = await _new_key(account_store)
    proxy.thaw()
    deadline = time.monotonic() + 60  # only bounds a failure
    while True:
        try:
            assert (await auth.authenticate(never_seen)).active
            break
        except GatewayError as error:
            assert error.status == 503
            assert time.monotonic() < deadline, "key lookups did not recover"
            await asyncio.sleep(0.05)
    grant = await auth.authenticate(seen)
    await account_store.revoke_key(grant.key_id)
    await asyncio.sleep(TTL + 0.1)
    with pytest.raises(GatewayError) as revoked:
        await auth.authenticate(seen)
    assert revoked.value.status == 403


async def test_a_new_connection_that_is_never_answered_is_an_outage_too(
    database_url: str, proxy: FreezeProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """No pooled connection yet (``min_size=0``): the lookup hangs in connect. The log
    says what timed out (a TimeoutError has no text of its own)."""
    proxy.freeze()
    pool = await _gateway_pool(_with_address(database_url, "127.0.0.1", proxy.port))
    try:
        auth = _authenticator(AccountStore(pool, actor="tests"))
        with caplog.at_level(logging.ERROR, logger=auth_module.__name__):
            took, result = await _timed(auth.authenticate(generate_key()))
        assert _status(result) == 503 and took < IN_TIME, (result, took)
        assert f"TimeoutError: no answer within {DEADLINE:g} s" in caplog.text
    finally:
        proxy.thaw()
        await _close(pool)


# ---- unknown keys never evict real ones --------------------------------------------


class SwitchableStore(AccountStore):
    """Looks keys up in ``current``: switch it to a dead database to make an outage."""

    def __init__(self, current: AccountStore) -> None:
        self.current = current
        self.queries = 0

    async def find_grant(self, key_hash: bytes) -> KeyGrant | None:
        self.queries += 1
        return await self.current.find_grant(key_hash)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_flood_of_random_keys_does_not_evict_a_real_one(
    account_store: AccountStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound's size does not change what is tested (misses never take a grant's
    # place); a smaller one floods it with 3,000 lookups instead of 101,000.
    monkeypatch.setattr(auth_module, "_MAX_GRANTS", 2_000)
    real = await _new_key(account_store)
    store = SwitchableStore(account_store)
    # This test is about eviction, not the deadline: a generous one, so that a busy
    # machine queueing the flood for the pool's few connections is not an outage.
    auth = _authenticator(store, timeout=30.0)
    assert (await auth.authenticate(real)).active

    async def random_key() -> None:
        with pytest.raises(GatewayError) as refused:
            await auth.authenticate(generate_key())
        assert refused.value.status == 401

    flood = auth_module._MAX_GRANTS + 1_000
    for _ in range(flood // 100):  # well-formed random keys, each a real Postgres miss
        await asyncio.gather(*(random_key() for _ in range(100)))
    assert store.queries > flood

    dead = await _gateway_pool(f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres")
    try:
        store.current = AccountStore(dead, actor="tests")
        await asyncio.sleep(TTL + 0.1)
        took, result = await _timed(auth.authenticate(real))
        assert isinstance(result, KeyGrant) and result.active, result
        assert took < IN_TIME
    finally:
        dead.terminate()


async def test_the_least_recently_used_key_goes_first(
    account_store: AccountStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_module, "_MAX_GRANTS", 3)
    project = unique("authlru")
    await account_store.create_project(project, Plan.PRO)
    busy, idle, other, newest = [await _new_key(account_store, project) for _ in range(4)]
    store = SwitchableStore(account_store)
    auth = _authenticator(store)
    for key in (busy, idle, other):
        await auth.authenticate(key)
    await auth.authenticate(busy)  # a cache hit: the busy key is now the most recent
    await auth.authenticate(newest)  # a fourth key: the least recently used one goes

    dead = await _gateway_pool(f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres")
    try:
        store.current = AccountStore(dead, actor="tests")
        await asyncio.sleep(TTL + 0.1)
        assert (await auth.authenticate(busy)).active  # kept: served stale
        with pytest.raises(GatewayError) as evicted:
            await auth.authenticate(idle)
        assert evicted.value.status == 503
    finally:
        dead.terminate()


# ---- a request sharing a lookup goes away ---------------------------------------


class GatedStore(AccountStore):
    """Holds every lookup until ``gate`` opens, then asks the real store (or fails)."""

    def __init__(self, real: AccountStore) -> None:
        self.real = real
        self.gate = asyncio.Event()
        self.fail = False
        self.queries = 0

    async def find_grant(self, key_hash: bytes) -> KeyGrant | None:
        self.queries += 1
        await self.gate.wait()
        if self.fail:
            raise ConnectionRefusedError("postgres down")
        return await self.real.find_grant(key_hash)


async def test_a_waiter_gets_its_answer_when_the_request_that_asked_goes_away(
    account_store: AccountStore,
) -> None:
    key = await _new_key(account_store)
    store = GatedStore(account_store)
    auth = _authenticator(store)
    leader = asyncio.create_task(auth.authenticate(key))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(auth.authenticate(key))
    await asyncio.sleep(0.01)
    leader.cancel()  # its client hung up
    await asyncio.sleep(0.01)
    store.gate.set()
    grant = await asyncio.wait_for(waiter, 5)
    assert grant.active
    assert store.queries == 1  # the two requests shared one query
    assert leader.cancelled()


async def test_a_failed_lookup_nobody_waits_for_leaves_no_unretrieved_exception(
    account_store: AccountStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The lookups nobody waits for: a leader that went away, and the background probe
    of an outage (a request with a stale answer answers at once)."""
    key = await _new_key(account_store)
    store = GatedStore(account_store)
    auth = _authenticator(store)
    store.gate.set()
    assert (await auth.authenticate(key)).active  # seen: a stale answer to fall back on
    store.gate.clear()
    store.fail = True
    await asyncio.sleep(TTL + 0.1)
    gc.collect()  # earlier tests' garbage is not this test's
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        leader = asyncio.create_task(auth.authenticate(key))
        await asyncio.sleep(0.01)
        leader.cancel()
        store.gate.set()  # the lookup fails: an outage begins
        await asyncio.sleep(0.05)
        assert leader.cancelled()
        await asyncio.sleep(auth_module._PROBE_EVERY_SECONDS + 0.05)
        probes = store.queries
        took, result = await _timed(auth.authenticate(key))  # starts a probe, no wait
        assert isinstance(result, KeyGrant) and took < AT_ONCE, (result, took)
        await asyncio.sleep(0.05)
        assert store.queries == probes + 1
        gc.collect()
        await asyncio.sleep(0.01)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
