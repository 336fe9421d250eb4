"""Routing: which deployments serve a model, which one gets an attempt, what happens
when it fails.

- ``schema``: the routes file (``WATCHLLM_ROUTES_FILE``, YAML) and its JSON shorthand
  (``WATCHLLM_ROUTES``), validated with errors naming the entry and field;
- ``table``: ``ModelRouter``, a model's deployments and fallback chain;
- ``cooldown``: per-deployment health, cooled down after failures, probed back in;
- ``balancer``: a weighted choice among the healthy deployments;
- ``capacity``: a deployment's ``rpm``/``tpm``, exact across replicas (in Redis);
- ``dispatch``: the attempt loop (other deployments, then fallbacks, bounded);
- ``metrics``: per-deployment counters.

``Routing.from_settings`` builds them all for one gateway process. Health state is per
replica (``cooldown``). On SIGHUP (``watch_reload_signal``) the routes are read and
checked again: a good table replaces the old one for requests routed from then on (those
in flight keep theirs), a bad one is logged with its problems and the old table stays.
``python -m watchllm_gateway.routing check FILE`` validates a routes file (``watchllm
routes check FILE`` runs it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from watchllm_gateway.routing.balancer import Balancer
from watchllm_gateway.routing.capacity import DeploymentCapacity
from watchllm_gateway.routing.cooldown import Cooldowns
from watchllm_gateway.routing.dispatch import Dispatched, Dispatcher, Outgoing
from watchllm_gateway.routing.metrics import RoutingMetrics
from watchllm_gateway.routing.schema import (
    DEFAULT_DOCUMENT,
    RoutesDocument,
    RoutesError,
    parse_text,
    validate,
)
from watchllm_gateway.routing.table import Candidates, Deployment, ModelRoute, ModelRouter
from watchllm_gateway.settings import GatewaySettings, secret_from_env
from watchllm_gateway.upstream import UpstreamClient
from watchllm_shared.redis_packed import PackedCommands

__all__ = [
    "Candidates",
    "Deployment",
    "Dispatched",
    "Dispatcher",
    "ModelRoute",
    "ModelRouter",
    "Outgoing",
    "Routing",
    "RoutesDocument",
    "RoutesError",
    "load_routes",
]


log = logging.getLogger(__name__)


def load_routes(settings: GatewaySettings) -> RoutesDocument:
    """The routes the settings name; ``RoutesError`` says everything wrong with them."""
    if settings.routes_file is not None and settings.routes is not None:
        raise RoutesError("settings", [
            "set WATCHLLM_ROUTES_FILE or WATCHLLM_ROUTES, not both"
        ])  # fmt: skip
    if settings.routes_file is not None:
        path = settings.routes_file
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise RoutesError(str(path), [f"cannot be read: {exc}"]) from exc
        return parse_text(text, str(path))
    if isinstance(settings.routes, str):
        return parse_text(settings.routes, "WATCHLLM_ROUTES", json_only=True)
    if settings.routes is not None:
        return validate(settings.routes, "routes")
    return DEFAULT_DOCUMENT


@dataclass(frozen=True, slots=True)
class Routing:
    router: ModelRouter
    cooldowns: Cooldowns
    dispatcher: Dispatcher
    metrics: RoutingMetrics
    settings: GatewaySettings

    @classmethod
    def from_settings(
        cls,
        settings: GatewaySettings,
        upstream: UpstreamClient,
        registry: CollectorRegistry,
        retries: Counter | None = None,
        clock: Callable[[], float] | None = None,
        commands: PackedCommands | None = None,  # Redis: for deployments' rpm/tpm
    ) -> Routing:
        router = ModelRouter.from_document(load_routes(settings), secret_from_env)
        cooldowns = Cooldowns(
            settings.upstream_cooldown_seconds,
            settings.upstream_cooldown_max_seconds,
            clock or time.monotonic,
        )
        metrics = RoutingMetrics(registry, retries)
        metrics.watch(cooldowns, router.deployments())
        dispatcher = Dispatcher(
            upstream, Balancer(cooldowns), metrics,
            max_attempts=settings.upstream_max_retries + 1,
            backoff_seconds=settings.upstream_retry_backoff_seconds,
            deadline_seconds=settings.upstream_retry_deadline_seconds,
            capacity=None if commands is None else DeploymentCapacity(
                commands, registry, settings.limiter_timeout_seconds
            ),
        )  # fmt: skip
        return cls(router, cooldowns, dispatcher, metrics, settings)

    def reload(self) -> bool:
        """Read the routes again; False (logged, the old table kept) when they are bad."""
        try:
            fresh = ModelRouter.from_document(load_routes(self.settings), secret_from_env)
        except RoutesError as exc:
            log.error("routes not reloaded, the current ones stay: %s", exc)
            return False
        self.router.replace(fresh)
        self.metrics.watch(self.cooldowns, fresh.deployments())
        log.info("routes reloaded: %d deployments", len(fresh.deployments()))
        return True

    def watch_reload_signal(self) -> Callable[[], None]:
        """Reload on SIGHUP (call from the running loop); returns what stops watching."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        except (ValueError, RuntimeError):  # not the main thread (an app inside a test)
            log.info("routes will not reload on SIGHUP: not in the main thread")
            return lambda: None

        def stop() -> None:
            loop.remove_signal_handler(signal.SIGHUP)

        return stop
