"""Choosing a deployment: by weight among the healthy ones not tried yet.

``choose`` draws one deployment with probability proportional to its weight among
those ``Cooldowns`` says are available and the request has not tried; ``last_resort``
is for when none is: the deployment whose cooldown ends first (so a model with one
deployment is still tried, as it was before cooldowns, rather than refused unasked).

The random source is passed in: tests replace it to make choices exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence

from watchllm_gateway.routing.cooldown import Cooldowns
from watchllm_gateway.routing.table import Deployment


class Balancer:
    def __init__(self, cooldowns: Cooldowns, uniform: Callable[[], float] = random.random) -> None:
        self.cooldowns = cooldowns
        self._uniform = uniform

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
        point = self._uniform() * sum(d.weight for d in healthy)
        for deployment in healthy:
            point -= deployment.weight
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
