"""Choosing deployments: weights, cooldowns with backoff, retry-after, probes — with a
controlled random source and clock, so every number is exact."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from watchllm_gateway.routing.balancer import Balancer
from watchllm_gateway.routing.cooldown import Cooldowns
from watchllm_gateway.routing.table import Deployment
from watchllm_gateway.settings import ProviderKind

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deployment(name: str, weight: float = 1.0) -> Deployment:
    return Deployment(name, ProviderKind.OPENAI, f"http://{name}/v1", None, weight)


A, B, C = deployment("a", 1), deployment("b", 3), deployment("c", 6)


@pytest.mark.parametrize("seed", range(5))
def test_weights_are_honoured_within_5_percent_over_2000_choices(seed: int) -> None:
    """Within 5 percentage points of each weight's share; over 2,000 draws one standard
    deviation is at most 1.1 points, so no seed comes close to the bound."""
    balancer = Balancer(Cooldowns(1, 60, Clock()), random.Random(seed).random)
    chosen = Counter(balancer.choose([A, B, C], (), 0.0).name for _ in range(2000))  # type: ignore[union-attr]
    for d in (A, B, C):
        assert abs(chosen[d.name] / 2000 - d.weight / 10) <= 0.05, chosen


def test_weights_map_the_random_draw_exactly() -> None:
    draws = iter([0.0, 0.099, 0.1, 0.399, 0.4, 0.999])
    balancer = Balancer(Cooldowns(1, 60, Clock()), lambda: next(draws))
    assert [balancer.choose([A, B, C], (), 0.0).name for _ in range(6)] == [  # type: ignore[union-attr]
        "a", "a", "b", "b", "c", "c"
    ]  # fmt: skip


def test_cooled_and_tried_deployments_are_skipped_and_the_weights_renormalised() -> None:
    clock = Clock()
    cooldowns = Cooldowns(1, 60, clock)
    balancer = Balancer(cooldowns, random.Random(1).random)
    cooldowns.failed("c", clock.now)
    chosen = Counter(balancer.choose([A, B, C], (), clock.now).name for _ in range(2000))  # type: ignore[union-attr]
    assert chosen["c"] == 0 and abs(chosen["b"] / 2000 - 0.75) < 0.0375
    assert balancer.choose([A, B, C], {"a", "b"}, clock.now) is None
    assert balancer.last_resort([A, B, C], {"a", "b"}, clock.now) is C


def test_failures_in_a_row_double_the_cooldown_up_to_the_cap() -> None:
    clock = Clock()
    cooldowns = Cooldowns(1, 10, clock)
    assert [cooldowns.failed("a", clock.now) for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    cooldowns.succeeded("a")
    assert cooldowns.failed("a", clock.now) == 1


def test_a_retry_after_cools_for_exactly_that_long_capped() -> None:
    clock = Clock()
    cooldowns = Cooldowns(1, 60, clock)
    assert cooldowns.failed("a", clock.now, retry_after=30) == 30
    clock.now += 29.999
    assert not cooldowns.available("a", clock.now)
    clock.now += 0.001
    assert cooldowns.available("a", clock.now)
    assert cooldowns.failed("b", clock.now, retry_after=3600) == 60


def test_after_the_cooldown_one_probe_goes_alone_and_decides() -> None:
    clock = Clock()
    cooldowns = Cooldowns(2, 60, clock)
    cooldowns.failed("a", clock.now)
    clock.now += 2
    assert cooldowns.available("a", clock.now)
    cooldowns.begin("a", clock.now)  # the probe
    assert not cooldowns.available("a", clock.now)  # the others wait for its answer
    cooldowns.failed("a", clock.now)  # the probe failed: longer this time
    clock.now += 3.9
    assert not cooldowns.available("a", clock.now)
    clock.now += 0.1
    cooldowns.begin("a", clock.now)
    cooldowns.succeeded("a")  # back in
    assert cooldowns.available("a", clock.now) and cooldowns.cooling(clock.now) == {}


def test_a_probe_that_never_reports_does_not_keep_the_deployment_out() -> None:
    clock = Clock()
    cooldowns = Cooldowns(1, 5, clock)
    cooldowns.failed("a", clock.now)
    clock.now += 1
    cooldowns.begin("a", clock.now)
    cooldowns.released("a")  # cancelled: another request may probe
    assert cooldowns.available("a", clock.now)
    cooldowns.begin("a", clock.now)
    clock.now += 5  # lost without a word: after the cap, another probe
    assert cooldowns.available("a", clock.now)


def test_deployments_of_similar_speed_split_by_weight_and_a_slow_one_loses_its_share() -> None:
    balancer = Balancer(Cooldowns(1, 60, Clock()), random.Random(3).random, 0.05, 2.0)
    a, b = deployment("a", 1), deployment("b", 1)
    for _ in range(20):  # both under the floor: only weights count
        balancer.observe("a", 0.004)
        balancer.observe("b", 0.03)
    even = Counter(balancer.choose([a, b], (), 0.0).name for _ in range(2000))  # type: ignore[union-attr]
    assert abs(even["a"] / 2000 - 0.5) <= 0.05, even
    for _ in range(20):  # b now answers in 1 s: 10 times the tolerated 0.1 s
        balancer.observe("b", 1.0)
    assert balancer.latency("b") == pytest.approx(1.0, rel=0.02)
    slow = Counter(balancer.choose([a, b], (), 0.0).name for _ in range(2000))  # type: ignore[union-attr]
    assert abs(slow["b"] / 2000 - 0.1 / 1.1) <= 0.03, slow  # weight 1 x 0.1 against 1
