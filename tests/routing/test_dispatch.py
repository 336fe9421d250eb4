"""The attempt loop against real fake-provider processes on loopback, with the clock and
the random source in the test's hands: weights, a 429's retry-after, fallbacks in order
and bounded. (Through a gateway process and the SDKs: ``test_routing_e2e``.)"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.routing.fakes import clear, models_received, start_fake
from tests.support.processes import ServiceProcess, free_port
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.routing import Candidates, Deployment, Dispatcher
from watchllm_gateway.routing.balancer import Balancer
from watchllm_gateway.routing.cooldown import Cooldowns
from watchllm_gateway.routing.metrics import RoutingMetrics
from watchllm_gateway.routing.table import Chain
from watchllm_gateway.settings import GatewaySettings, ProviderKind
from watchllm_gateway.upstream import UpstreamClient, create_http_session

pytestmark = pytest.mark.unit

PATH = "/chat/completions"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:  # a backoff passes at once
        self.now += seconds


@pytest.fixture(scope="module")
def fakes(log_dir: Path) -> Iterator[dict[str, ServiceProcess]]:
    started = {
        "a": start_fake(log_dir), "b": start_fake(log_dir), "c": start_fake(log_dir),
        "limited": start_fake(log_dir, "--error-rate", "1", "--error-status", "429",
                              "--error-retry-after", "30"),
        "failing": start_fake(log_dir, "--error-rate", "1", "--error-status", "500"),
        "small": start_fake(log_dir, "--context-window-chars", "20"),
    }  # fmt: skip
    yield started
    for fake in started.values():
        fake.stop()


@pytest.fixture
async def upstream() -> AsyncIterator[UpstreamClient]:
    session = create_http_session(GatewaySettings(upstream_read_timeout_seconds=10))
    yield UpstreamClient(session, GatewayMetrics())
    await session.close()


def deployment(name: str, fake: ServiceProcess | str, weight: float = 1) -> Deployment:
    url = fake if isinstance(fake, str) else fake.url
    return Deployment(name, ProviderKind.OPENAI, f"{url}/v1", None, weight)


def dispatcher(
    upstream: UpstreamClient, clock: Clock, uniform: Callable[[], float], max_attempts: int = 3
) -> Dispatcher:
    balancer = Balancer(Cooldowns(1, 60, clock), uniform)
    metrics = RoutingMetrics(GatewayMetrics().registry)
    return Dispatcher(upstream, balancer, metrics, max_attempts, 0.01, 30, clock.sleep)


class encoder:  # noqa: N801 - reads as the function it replaced
    """The same chat body for every deployment, with its upstream model name."""

    def __init__(self, text: str) -> None:
        self.messages = [{"role": "user", "content": text}]

    def request(self, deployment: Deployment, model: str) -> tuple[str, bytes, dict[str, str]]:
        return PATH, orjson.dumps({"model": model, "messages": self.messages}), {}


async def test_2000_requests_split_by_weight_within_5_percent(
    fakes: dict[str, ServiceProcess], upstream: UpstreamClient
) -> None:
    a, b, c = fakes["a"], fakes["b"], fakes["c"]
    clear(a, b, c)
    chain = [Candidates("m", (deployment("a", a, 1), deployment("b", b, 2), deployment("c", c, 2)))]
    send = dispatcher(upstream, Clock(), random.Random(2026).random).send
    answered: Counter[str] = Counter()
    for _ in range(40):  # 40 rounds of 50 at once
        batch = await asyncio.gather(*(send(chain, encoder("w")) for _ in range(50)))
        for done in batch:
            assert done.answer.status == 200 and done.answer.attempts == 1
            done.answer.close()
            answered[done.deployment.name] += 1
    # What each fake process received is what the balancer chose.
    assert {n: len(models_received(f)) for n, f in (("a", a), ("b", b), ("c", c))} == answered
    for name, share in (("a", 0.2), ("b", 0.4), ("c", 0.4)):
        assert abs(answered[name] / 2000 - share) <= 0.05, answered


async def test_a_429s_retry_after_cools_that_deployment_exactly_that_long(
    fakes: dict[str, ServiceProcess], upstream: UpstreamClient
) -> None:
    limited, ok = fakes["limited"], fakes["a"]
    clear(limited, ok)
    clock = Clock()
    send = dispatcher(upstream, clock, lambda: 0.0).send  # 0.0: the first healthy one
    chain = [Candidates("m", (deployment("limited", limited), deployment("ok", ok)))]
    first = await send(chain, encoder("r"))
    assert (first.deployment.name, first.answer.status, first.answer.attempts) == ("ok", 200, 2)
    first.answer.close()
    clock.now = 29.999  # retry-after: 30 — nothing goes to it before
    for _ in range(5):
        done = await send(chain, encoder("r"))
        assert (done.deployment.name, done.answer.attempts) == ("ok", 1)
        done.answer.close()
    assert len(models_received(limited)) == 1
    clock.now = 30.0  # then one request probes it (and it still answers 429)
    probe = await send(chain, encoder("r"))
    assert (probe.deployment.name, probe.answer.attempts) == ("ok", 2)
    probe.answer.close()
    assert len(models_received(limited)) == 2 and len(models_received(ok)) == 7


async def test_fallbacks_are_tried_in_order_with_the_model_rewritten_and_attempts_bounded(
    fakes: dict[str, ServiceProcess], upstream: UpstreamClient
) -> None:
    failing, ok = fakes["failing"], fakes["b"]
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    chain = [
        Candidates("primary", (deployment("dead", dead),)),
        Candidates("fb-1", (deployment("fb-1[0]", failing),)),
        Candidates("fb-2", (deployment("fb-2[0]", ok),)),
    ]
    clear(failing, ok)
    done = await dispatcher(upstream, Clock(), lambda: 0.0, max_attempts=3).send(
        chain, encoder("f")
    )
    assert (done.model, done.fallback, done.deployment.name) == ("fb-2", True, "fb-2[0]")
    assert done.answer.status == 200 and done.answer.attempts == 3
    done.answer.close()
    assert (models_received(failing), models_received(ok)) == (["fb-1"], ["fb-2"])
    # Two attempts allowed: the chain stops at the first fallback, whose 500 is the answer.
    clear(failing, ok)
    short = await dispatcher(upstream, Clock(), lambda: 0.0, max_attempts=2).send(
        chain, encoder("f")
    )
    assert (short.model, short.answer.status, short.answer.attempts) == ("fb-1", 500, 2)
    short.answer.close()
    assert (models_received(failing), models_received(ok)) == (["fb-1"], [])


async def test_a_context_length_error_goes_to_the_context_window_fallbacks_only(
    fakes: dict[str, ServiceProcess], upstream: UpstreamClient
) -> None:
    small, failing, big = fakes["small"], fakes["failing"], fakes["c"]
    chain = Chain((Candidates("m", (deployment("small", small),)),
                   Candidates("fb", (deployment("fb[0]", failing),))))  # fmt: skip
    chain.context_fallbacks = (Candidates("big", (deployment("big[0]", big),)),)
    clear(small, failing, big)
    send = dispatcher(upstream, Clock(), lambda: 0.0).send
    done = await send(chain, encoder("a prompt longer than twenty characters"))
    assert (done.model, done.fallback, done.answer.status, done.answer.attempts) == (
        "big", True, 200, 2
    )  # fmt: skip
    done.answer.close()
    assert (models_received(small), models_received(failing), models_received(big)) == (
        ["m"], [], ["big"]
    )  # fmt: skip
    fits = await send(chain, encoder("short"))  # fits: no fallback at all
    assert (fits.model, fits.answer.status, fits.answer.attempts) == ("m", 200, 1)
    fits.answer.close()
    # Without context window fallbacks the 400 is the caller's, body and all.
    plain = await send(tuple(chain), encoder("a prompt longer than twenty characters"))
    assert (plain.answer.status, plain.answer.attempts) == (400, 1)
    assert b"context_length_exceeded" in await plain.answer.read()
    plain.answer.close()
