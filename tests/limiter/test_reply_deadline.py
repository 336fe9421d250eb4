"""``PackedCommands`` calls with ``reply_within`` (``ReplyDeadline``) against the real
Redis, behind a proxy that can play a hung Redis: a call fails for what Redis did not
do, never for the time the caller itself lost (a queue for connections, a loop too busy
to read a reply that was there)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from tests.support.freeze_proxy import FreezeProxy
from watchllm_shared.deadline import Deadline
from watchllm_shared.redis_deadline import RedisTimeout
from watchllm_shared.redis_io import create_redis
from watchllm_shared.redis_packed import PackedCommands

pytestmark = pytest.mark.integration

SECONDS = 0.2


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FreezeProxy]:
    upstream = urlsplit(redis_url)
    proxy = FreezeProxy(upstream.hostname or "127.0.0.1", upstream.port or 6379)
    await proxy.start()
    yield proxy
    proxy.thaw()
    await proxy.close()


@pytest.fixture
async def proxied_client(redis_url: str, proxy: FreezeProxy) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(proxy.url_for(redis_url),
                          socket_timeout=False)  # fmt: skip
    yield client
    await client.aclose()


async def test_redis_that_stops_answering_fails_the_call_saying_what_it_did_not_do(
    proxied_client: aioredis.Redis, proxy: FreezeProxy
) -> None:
    commands = PackedCommands(proxied_client)
    assert await commands.call("PING", reply_within=SECONDS) == b"PONG"
    proxy.freeze()
    with pytest.raises(RedisTimeout, match=f"Redis did not answer PING within {SECONDS:g} s"):
        await commands.call("PING", reply_within=SECONDS)
    # That connection is dropped; a new one gets no answer to its handshake either.
    with pytest.raises(RedisTimeout, match="Redis did not answer PING"):
        await commands.call("PING", reply_within=SECONDS)
    proxy.thaw()
    assert await commands.call("ECHO", "next", reply_within=SECONDS) == b"next"
    await commands.aclose()


async def test_waiting_for_a_connection_behind_a_slow_command_is_not_redis_being_late(
    redis: aioredis.Redis,
) -> None:
    """One connection, taken by a BLPOP that Redis holds for 1 s as asked: the PING
    behind it waits five times its deadline for the connection, and gets its answer."""
    commands = PackedCommands(redis, max_connections=1)
    queue = f"test:deadline:{uuid.uuid4().hex}"
    blocking = asyncio.create_task(commands.call("BLPOP", queue, 1))
    await asyncio.sleep(0.05)  # the BLPOP holds the only connection
    assert await commands.call("PING", reply_within=SECONDS) == b"PONG"
    assert await blocking is None

    # What the limiter's deadline did before: the wait counted against it.
    blocking = asyncio.create_task(commands.call("BLPOP", queue, 1))
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        async with Deadline(SECONDS):
            await commands.call("PING")
    await blocking
    await commands.aclose()


async def test_an_outage_fails_the_calls_waiting_for_a_connection_with_the_first(
    proxied_client: aioredis.Redis, proxy: FreezeProxy
) -> None:
    """Two connections, eight calls: when the two sent ones give up on a hung Redis,
    the six waiting fail with them instead of each taking a connection in turn and
    waiting its own deadline again."""
    commands = PackedCommands(proxied_client, max_connections=2)
    await asyncio.gather(*(commands.call("PING") for _ in range(2)))  # two connections
    connections = proxy.accepted
    proxy.freeze()
    calls = [commands.call("PING", reply_within=SECONDS) for _ in range(8)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, RedisTimeout) for o in outcomes), outcomes
    reasons = sorted(str(o).split(" ")[1] for o in outcomes)
    assert reasons == ["did"] * 2 + ["stopped"] * 6, outcomes
    assert proxy.accepted == connections, "waiting calls opened connections to a hung Redis"
    proxy.thaw()
    await commands.aclose()
