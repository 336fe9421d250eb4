"""Deployments' rpm and tpm, exact across gateway replicas: two replicas' dispatchers
(each with its own balancer, cooldowns and Redis connections) share the limiter's
library in a real Redis and send to fake-provider processes on loopback. The windows'
clock is the test's (``now_ms``), so a minute passes without waiting for it.
(Through a gateway process and the SDKs: ``test_routing_e2e``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from tests.routing.fakes import clear, models_received, start_fake
from tests.routing.test_dispatch import Clock, encoder
from tests.support.processes import ServiceProcess, free_port
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.routing import Candidates, Deployment, Dispatcher
from watchllm_gateway.routing.balancer import Balancer
from watchllm_gateway.routing.capacity import DeploymentCapacity
from watchllm_gateway.routing.cooldown import Cooldowns
from watchllm_gateway.routing.metrics import RoutingMetrics
from watchllm_gateway.settings import GatewaySettings, ProviderKind
from watchllm_gateway.upstream import UpstreamClient, create_http_session
from watchllm_shared.redis_packed import PackedCommands

pytestmark = pytest.mark.integration

T0 = 1_800_000_000_000  # ms: the windows' clock, moved by the tests


@pytest.fixture(scope="module")
def fakes(log_dir: Path) -> Iterator[dict[str, ServiceProcess]]:
    started = {"a": start_fake(log_dir), "b": start_fake(log_dir)}
    yield started
    for fake in started.values():
        fake.stop()


class Replicas:
    """Two gateway replicas' routing: what each process builds (``Routing``)."""

    def __init__(self, upstream: UpstreamClient, redis_url: str) -> None:
        self.now_ms = T0
        self.clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
        self.commands = [PackedCommands(client) for client in self.clients]
        self.metrics = [GatewayMetrics() for _ in range(2)]
        self.dispatchers = [
            Dispatcher(
                upstream,
                Balancer(Cooldowns(1, 60, Clock()), lambda: 0.0),  # the first one
                RoutingMetrics(metrics.registry),
                3,
                0.01,
                30,
                capacity=DeploymentCapacity(commands, metrics.registry, 1.0, lambda: self.now_ms),
            )  # fmt: skip
            for commands, metrics in zip(self.commands, self.metrics, strict=True)
        ]

    async def send(self, replica: int, chain: list[Candidates]) -> str:
        """Which deployment answered the request sent through ``replica``."""
        done = await self.dispatchers[replica].send(chain, encoder("c"))
        assert done.answer.status == 200
        done.answer.close()
        return done.deployment.name

    def counted(self, name: str, deployment: str) -> float:
        total = 0.0
        for metrics in self.metrics:
            value = metrics.registry.get_sample_value(f"{name}_total", {"deployment": deployment})
            total += value or 0.0
        return total

    async def close(self) -> None:
        for commands, client in zip(self.commands, self.clients, strict=True):
            await commands.aclose()
            await client.aclose()


@pytest.fixture
async def replicas(redis_url: str, limiter_library: None) -> AsyncIterator[Replicas]:
    session = create_http_session(GatewaySettings(upstream_read_timeout_seconds=10))
    made = Replicas(UpstreamClient(session, GatewayMetrics()), redis_url)
    yield made
    await made.close()
    await session.close()


def deployment(name: str, fake: ServiceProcess, rpm: int | None = None,
               tpm: int | None = None) -> Deployment:  # fmt: skip
    return Deployment(name, ProviderKind.OPENAI, f"{fake.url}/v1", None, 1, rpm=rpm, tpm=tpm)


async def fcalls(redis_url: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_fcall", {}).get("calls", 0))


async def test_two_replicas_send_exactly_rpm_a_minute_to_a_shared_deployment(
    fakes: dict[str, ServiceProcess], replicas: Replicas, redis_url: str
) -> None:
    a, b = fakes["a"], fakes["b"]
    clear(a, b)
    chain = [Candidates("m", (deployment("shared-a", a, rpm=3), deployment("spare-b", b)))]
    # The balancer prefers shared-a every time; the replicas take turns.
    answered = [await replicas.send(i % 2, chain) for i in range(10)]
    assert answered == ["shared-a"] * 3 + ["spare-b"] * 7
    assert (len(models_received(a)), len(models_received(b))) == (3, 7)
    assert replicas.counted("watchllm_deployment_full", "shared-a") == 7
    replicas.now_ms = T0 + 59_999  # the first three are still in the window
    assert [await replicas.send(i % 2, chain) for i in range(2)] == ["spare-b"] * 2
    replicas.now_ms = T0 + 60_000  # a minute after them: three more, across both
    answered = [await replicas.send(i % 2, chain) for i in range(5)]
    assert answered == ["shared-a"] * 3 + ["spare-b"] * 2
    assert len(models_received(a)) == 6
    # A deployment without rpm or tpm costs no call to Redis at all.
    before = await fcalls(redis_url)
    alone = [Candidates("m", (deployment("unlimited-b", b),))]
    assert [await replicas.send(i % 2, alone) for i in range(4)] == ["unlimited-b"] * 4
    assert await fcalls(redis_url) == before


async def test_a_full_deployment_falls_back_and_all_full_is_a_429_with_retry_after(
    fakes: dict[str, ServiceProcess], replicas: Replicas
) -> None:
    a, b = fakes["a"], fakes["b"]
    clear(a, b)
    chain = [
        Candidates("m", (deployment("one-a", a, rpm=1), deployment("one-b", b, rpm=1))),
        Candidates("fb", (deployment("fb-a", a, rpm=1),)),
    ]
    assert [await replicas.send(i % 2, chain) for i in range(3)] == ["one-a", "one-b", "fb-a"]
    assert models_received(a) == ["m", "fb"] and models_received(b) == ["m"]
    replicas.now_ms = T0 + 20_000
    for replica in (0, 1):
        with pytest.raises(GatewayError) as refused:
            await replicas.dispatchers[replica].send(chain, encoder("c"))
        assert (refused.value.status, refused.value.code) == (429, "deployment_capacity_exceeded")
        assert refused.value.headers == {"retry-after": "40", "retry-after-ms": "40000"}
        assert refused.value.upstream_attempts == 0
    assert len(models_received(a)) + len(models_received(b)) == 3  # nothing more was sent
    replicas.now_ms = T0 + 60_000
    assert await replicas.send(0, chain) == "one-a"


async def test_an_answers_tokens_fill_the_tpm_window_of_its_deployment(
    fakes: dict[str, ServiceProcess], replicas: Replicas
) -> None:
    a, b = fakes["a"], fakes["b"]
    clear(a, b)
    chain = [Candidates("m", (deployment("tokens-a", a, tpm=50), deployment("other-b", b)))]
    charged: list[int] = []
    while True:  # replica 0 sends, and charges each answer's usage as the proxy does
        done = await replicas.dispatchers[0].send(chain, encoder("tokens"))
        if done.deployment.name != "tokens-a":
            done.answer.close()
            break
        tokens = orjson.loads(await done.answer.read())["usage"]["total_tokens"]
        done.answer.close()
        charged.append(tokens)
        replicas.dispatchers[0].used(done, tokens)
        assert replicas.dispatchers[0].capacity is not None
        await replicas.dispatchers[0].capacity.settled()
    # Admitted while the window held less than 50 tokens: the last one took it past.
    assert sum(charged[:-1]) < 50 <= sum(charged), charged
    assert len(models_received(a)) == len(charged) >= 2
    assert await replicas.send(1, chain) == "other-b"  # the other replica sees it full too
    replicas.now_ms = T0 + 60_000
    assert await replicas.send(1, chain) == "tokens-a"


async def test_without_an_answer_from_redis_the_attempt_goes_ahead_and_is_counted(
    fakes: dict[str, ServiceProcess],
) -> None:
    """Fail-open: the provider's own 429 still cools the deployment down."""
    a = fakes["a"]
    clear(a)
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}")  # nothing listens
    commands, metrics = PackedCommands(client), GatewayMetrics()
    session = create_http_session(GatewaySettings(upstream_read_timeout_seconds=10))
    send = Dispatcher(
        UpstreamClient(session, GatewayMetrics()), Balancer(Cooldowns(1, 60, Clock())),
        RoutingMetrics(metrics.registry), 3, 0.01, 30,
        capacity=DeploymentCapacity(commands, metrics.registry, 1.0),
    ).send  # fmt: skip
    try:
        for _ in range(3):  # rpm 1, but nobody can count
            done = await send([Candidates("m", (deployment("blind-a", a, rpm=1),))], encoder("x"))
            assert done.answer.status == 200 and done.taken is None
            done.answer.close()
    finally:
        await commands.aclose()
        await client.aclose()
        await session.close()
    assert len(models_received(a)) == 3
    unavailable = "watchllm_deployment_capacity_unavailable_total"
    assert metrics.registry.get_sample_value(unavailable, {"call": "take"}) == 3
