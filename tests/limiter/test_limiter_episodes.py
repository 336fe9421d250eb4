"""The gateway's limiter (``RateLimiter``) when Redis fails it, against the real Redis
behind a proxy that can hold one connection or all: one log line when an episode
begins and one when it ends however the asks in flight finish, and one probe at a time
while it lasts."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from tests.support.freeze_proxy import FreezeProxy
from watchllm_gateway import ratelimit
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.ratelimit import RateLimiter
from watchllm_shared.accounts import KeyGrant, Plan
from watchllm_shared.redis_io import create_redis
from watchllm_shared.redis_packed import PackedCommands

pytestmark = pytest.mark.integration

TIMEOUT = 0.5
BEGAN, ENDED = "rate limiter unavailable", "rate limiter answering again"


def _grant() -> KeyGrant:
    return KeyGrant(key_id=uuid.uuid4(), project_id=uuid.uuid4(), project_name="episodes",
                    plan=Plan.PRO, active=True, allowed_models=None,
                    requests_per_day=10**6)  # fmt: skip


@pytest.fixture
async def proxy(redis_url: str, redis: aioredis.Redis) -> AsyncIterator[FreezeProxy]:
    """A proxy in front of the session's Redis (the ``redis`` fixture loads the library)."""
    upstream = urlsplit(redis_url)
    proxy = FreezeProxy(upstream.hostname or "127.0.0.1", upstream.port or 6379)
    await proxy.start()
    yield proxy
    proxy.thaw()
    proxy.hold_when(None)
    await proxy.close()


@pytest.fixture
async def commands(redis_url: str, proxy: FreezeProxy) -> AsyncIterator[PackedCommands]:
    client = create_redis(proxy.url_for(redis_url),
                          socket_timeout=False)  # fmt: skip
    commands = PackedCommands(client)
    yield commands
    await commands.aclose()
    await client.aclose()


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.name == ratelimit.__name__)


async def test_an_ask_from_before_redis_last_answered_begins_no_new_episode(
    commands: PackedCommands, proxy: FreezeProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Two asks lose their connections (held by the proxy); between their failures a
    probe is answered. The second failure is old news: one episode, logged once."""
    limiter = RateLimiter(commands, GatewayMetrics(), TIMEOUT, "open")
    grant = _grant()
    proxy.hold_when(b"held-")
    finished: list[str] = []

    async def check(request_id: str) -> dict[str, str]:
        headers = await limiter.check(grant, request_id)
        finished.append(request_id)
        return headers

    with caplog.at_level(logging.WARNING, logger=ratelimit.__name__):
        first = asyncio.create_task(check("held-1"))
        await asyncio.sleep(TIMEOUT * 0.6)
        second = asyncio.create_task(check("held-2"))  # before the episode begins
        assert await first == {}  # failed open: the episode begins
        await asyncio.sleep(ratelimit._PROBE_EVERY_SECONDS + 0.05)
        probe = await check("answered")
        assert probe["x-ratelimit-limit-requests"] == "1000000"  # episode over
        assert await second == {}
    assert finished == ["held-1", "answered", "held-2"], "the probe must come in between"
    assert (_lines(caplog, BEGAN), _lines(caplog, ENDED)) == (1, 1), caplog.text
    assert "RedisTimeout: Redis did not answer FCALL watchllm_limit_check" in caplog.text


async def test_one_ask_at_a_time_probes_redis_during_an_episode(
    commands: PackedCommands, proxy: FreezeProxy, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = GatewayMetrics()
    limiter = RateLimiter(commands, metrics, TIMEOUT, "open")
    grant = _grant()
    with caplog.at_level(logging.WARNING, logger=ratelimit.__name__):
        proxy.freeze()
        assert await limiter.check(grant, "first") == {}  # the episode begins
        await asyncio.sleep(ratelimit._PROBE_EVERY_SECONDS + 0.05)
        connections = proxy.accepted
        answers = await asyncio.gather(*(limiter.check(grant, f"r{i}") for i in range(10)))
        assert answers == [{}] * 10
        assert proxy.accepted == connections + 1, "more than one ask went to a hung Redis"
        proxy.thaw()
        await asyncio.sleep(ratelimit._PROBE_EVERY_SECONDS + 0.05)
        answered = await limiter.check(grant, "after")
        assert answered["x-ratelimit-remaining-requests"]
    unavailable = metrics.limiter_unavailable.labels("open")._value.get()
    assert unavailable == 11  # every ask of the episode got the policy, counted
    assert (_lines(caplog, BEGAN), _lines(caplog, ENDED)) == (1, 1), caplog.text
