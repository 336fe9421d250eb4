"""Per-deployment counters on the gateway's registry.

Deployment names come from the routes file (``schema``), and fallback models from its
``fallbacks`` lists, so these labels are a bounded set the operator wrote: no caller's
string becomes a label (see ``watchllm_gateway.metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from watchllm_gateway.routing.cooldown import Cooldowns
from watchllm_gateway.routing.table import Deployment


class RoutingMetrics:
    def __init__(self, registry: CollectorRegistry, retries: Counter | None = None) -> None:
        self._attempts = Counter(
            "watchllm_upstream_attempts",
            "Upstream attempts by deployment and how they ended: answered (any answer that"
            " is the caller's), 429, 5xx, connect (nothing sent), broken (connection broke"
            " after sending), timeout.",
            ["deployment", "outcome"], registry=registry,
        )  # fmt: skip
        self._cooldowns = Counter(
            "watchllm_upstream_cooldowns", "Deployments cooled down, by reason.",
            ["deployment", "reason"], registry=registry,
        )  # fmt: skip
        self._cooldown_seconds = Counter(
            "watchllm_upstream_cooldown_seconds", "Cooldown time imposed, by deployment.",
            ["deployment"], registry=registry,
        )  # fmt: skip
        self._fallbacks = Counter(
            "watchllm_upstream_fallbacks",
            "Attempts sent to a fallback model, by that model.", ["model"], registry=registry,
        )  # fmt: skip
        self._cooling = Gauge(
            "watchllm_upstream_cooling_down",
            "1 while the deployment is cooling down in this replica.",
            ["deployment"], registry=registry,
        )  # fmt: skip
        self._retries = retries  # watchllm_upstream_retries{provider, reason}, kept
        self._bound: dict[tuple[str, str, str], Any] = {}

    def watch(self, cooldowns: Cooldowns, deployments: Iterable[Deployment]) -> None:
        """Export each deployment's cooling state, read at scrape time."""
        for deployment in deployments:
            self._cooling.labels(deployment.name).set_function(_cooling(cooldowns, deployment.name))

    def _child(self, kind: str, metric: Any, *labels: str) -> Any:
        key = (kind, *labels)
        child = self._bound.get(key)  # type: ignore[arg-type]
        if child is None:  # ``labels()`` takes a lock and builds a key: bind once
            child = self._bound[key] = metric.labels(*labels)  # type: ignore[index]
        return child

    def attempt_started(
        self, deployment: Deployment, fallback_model: str | None, retrying: str | None
    ) -> None:
        """``retrying``: the reason the previous attempt failed, if there was one."""
        if fallback_model is not None:
            self._child("f", self._fallbacks, fallback_model).inc()
        if retrying is not None and self._retries is not None:
            self._child("r", self._retries, deployment.provider.value, retrying).inc()

    def attempt_ended(self, deployment: Deployment, outcome: str) -> None:
        self._child("a", self._attempts, deployment.name, outcome).inc()

    def cooled(self, deployment: Deployment, reason: str, seconds: float) -> None:
        self._child("c", self._cooldowns, deployment.name, reason).inc()
        self._child("s", self._cooldown_seconds, deployment.name).inc(seconds)


def _cooling(cooldowns: Cooldowns, name: str) -> Callable[[], float]:
    return lambda: 1.0 if cooldowns.remaining(name, cooldowns.clock()) else 0.0
