"""Choosing a deployment: by weight among the healthy ones not tried yet, away from
slow ones.

``choose`` draws one deployment with probability proportional to its weight among
those ``Cooldowns`` says are available and the request has not tried. Latency counts
only when it differs clearly: each deployment's time to response headers is kept as an
EWMA (``observe``), latencies under ``latency_floor`` count as the floor, and a
deployment more than ``tolerance`` times slower than the fastest healthy one has its
weight scaled down by how much slower it is. So deployments of similar speed split
traffic exactly by weight, and one that turns slow (an overloaded region) loses most of
its share before it fails outright. A deployment not measured yet counts as fast.
``last_resort``
is for when none is: the deployment whose cooldown ends first (so a model with one
deployment is still tried, as it was before cooldowns, rather than refused unasked).

The random source is passed in: tests replace it to make choices exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence

from watchllm_gateway.routing.cooldown import Cooldowns
from watchllm_gateway.routing.table import Deployment

_EWMA_WEIGHT = 0.2  # of the newest sample


class Balancer:
    def __init__(
        self,
        cooldowns: Cooldowns,
        uniform: Callable[[], float] = random.random,
        latency_floor: float = 0.05,
        tolerance: float = 2.0,
    ) -> None:
        self.cooldowns = cooldowns
        self._uniform = uniform
        self._floor = latency_floor
        self._tolerance = tolerance
        self._latency: dict[str, float] = {}

    def observe(self, name: str, seconds: float) -> None:
        """A response's headers came after ``seconds`` from ``name``."""
        seconds = max(seconds, self._floor)
        before = self._latency.get(name)
        self._latency[name] = (
            seconds if before is None else before + _EWMA_WEIGHT * (seconds - before)
        )

    def latency(self, name: str) -> float:
        return self._latency.get(name, self._floor)

    def choose(
        self, deployments: Sequence[Deployment], exclude: Collection[str], now: float
    ) -> Deployment | None:
        if len(deployments) == 1:  # the common case, without building lists
            only = deployments[0]
            ok = only.name not in exclude and self.cooldowns.available(only.name, now)
            return only if ok else None
        healthy = [
            d for d in deployments
            if d.name not in exclude and self.cooldowns.available(d.name, now)
        ]  # fmt: skip
        if len(healthy) <= 1:
            return healthy[0] if healthy else None
        latencies = [self.latency(d.name) for d in healthy]
        allowed = self._tolerance * min(latencies)
        weights = [
            d.weight if seconds <= allowed else d.weight * allowed / seconds
            for d, seconds in zip(healthy, latencies, strict=True)
        ]
        point = self._uniform() * sum(weights)
        for deployment, weight in zip(healthy, weights, strict=True):
            point -= weight
            if point < 0:
                return deployment
        return healthy[-1]  # rounding left a sliver

    def last_resort(
        self, deployments: Sequence[Deployment], exclude: Collection[str], now: float
    ) -> Deployment | None:
        allowed = [d for d in deployments if d.name not in exclude]
        if not allowed:
            return None
        return min(allowed, key=lambda d: self.cooldowns.remaining(d.name, now))
