"""A deployment's requests and tokens per minute (``rpm``/``tpm`` in the routes file),
exact across gateway replicas.

A provider counts a key's (or an Azure deployment's) requests and tokens whichever
replica sends them, so the windows live in Redis, in the limiter's library
(``deployment.lua``, version 9), keyed by the deployment's name as its own hash tag:

- ``take``: before each attempt at a deployment with ``rpm`` or ``tpm``, one
  ``FCALL watchllm_deployment_take``. It admits the attempt (taking one request of the
  ``rpm`` window) or says the deployment is full and when a slot frees; the dispatcher
  then skips it for this request and picks another deployment or a fallback, and
  answers 429 in the caller's shape only when every one it could try is full;
- ``charge``: after the answer, the tokens it used (prompt + completion, from usage)
  go into the ``tpm`` window, fire and forget (``FCALL watchllm_deployment_charge``).
  An attempt is admitted while the window's sum is under ``tpm``: attempts in flight
  when it fills may pass it by their own usage, as with a project's ``tpm``.

A deployment without ``rpm`` and ``tpm`` costs nothing: no call, one attribute read.

Failure mode: Redis not answering within the limiter's deadline, or refusing (a library
older than version 9): the attempt goes ahead (fail-open; the provider's own 429 still
cools the deployment down), counted in
``watchllm_deployment_capacity_unavailable_total`` and logged once per episode. A
charge that fails is dropped, counted the same way.

Time is Redis's clock unless ``now_ms`` is given (tests control it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import RedisError

from watchllm_gateway.routing.table import Deployment
from watchllm_shared.contracts.limits import (
    DEPLOYMENT_CHARGE_FUNCTION,
    DEPLOYMENT_TAKE_FUNCTION,
    deployment_keys,
)
from watchllm_shared.redis_packed import PackedCommands

log = logging.getLogger(__name__)


class DeploymentCapacity:
    def __init__(
        self,
        commands: PackedCommands,
        registry: CollectorRegistry,
        timeout_seconds: float,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self._commands = commands
        self._timeout = timeout_seconds
        self._now_ms = now_ms
        # Attempt ids: unique across replicas and restarts without a uuid per attempt.
        self._prefix = os.urandom(6).hex()
        self._ids = itertools.count()
        self._keys: dict[str, list[str]] = {}
        self._charges: set[asyncio.Task[None]] = set()
        self._failing = False
        self._full = Counter(
            "watchllm_deployment_full",
            "Attempts not sent to a deployment because its rpm or tpm window was full.",
            ["deployment"], registry=registry,
        )  # fmt: skip
        self._unavailable = Counter(
            "watchllm_deployment_capacity_unavailable",
            "Deployment capacity asks (take) and charges Redis did not answer: the attempt"
            " went ahead, the charge was dropped.",
            ["call"], registry=registry,
        )  # fmt: skip

    def _keys_of(self, deployment: Deployment) -> list[str]:
        keys = self._keys.get(deployment.name)
        if keys is None:
            keys = self._keys[deployment.name] = deployment_keys(deployment.name)
        return keys

    def _now(self) -> tuple[str, ...]:
        return () if self._now_ms is None else (str(self._now_ms()),)

    async def take(self, deployment: Deployment) -> tuple[str | None, int]:
        """``(attempt id, 0)`` when the attempt may go (the id names it for ``charge``;
        None when Redis did not answer), ``(None, retry ms)`` when the deployment is full."""
        attempt = f"{self._prefix}:{next(self._ids)}"
        try:
            allowed, retry_ms = await self._commands.call(
                "FCALL", DEPLOYMENT_TAKE_FUNCTION, 3, *self._keys_of(deployment),
                deployment.rpm or "", deployment.tpm or "", attempt, *self._now(),
                reply_within=self._timeout,
            )  # fmt: skip
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("take", exc)
            return None, 0
        self._answered()
        if allowed:
            return attempt, 0
        self._full.labels(deployment.name).inc()
        return None, max(1, int(retry_ms))

    def charge(self, deployment: Deployment, attempt: str | None, tokens: int) -> None:
        """The answer used ``tokens``: into the deployment's ``tpm`` window (in a task)."""
        if deployment.tpm is None or attempt is None or tokens <= 0:
            return
        task = asyncio.get_running_loop().create_task(self._charge(deployment, attempt, tokens))
        self._charges.add(task)
        task.add_done_callback(self._charges.discard)

    async def _charge(self, deployment: Deployment, attempt: str, tokens: int) -> None:
        token_keys = self._keys_of(deployment)[1:]
        try:
            await self._commands.call(
                "FCALL", DEPLOYMENT_CHARGE_FUNCTION, 2, *token_keys, attempt, tokens,
                *self._now(), reply_within=self._timeout,
            )  # fmt: skip
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("charge", exc)

    async def settled(self) -> None:
        """Wait for the charges sent so far (tests; shutdown)."""
        if self._charges:
            await asyncio.gather(*self._charges, return_exceptions=True)

    def _failed(self, call: str, exc: Any) -> None:
        self._unavailable.labels(call).inc()
        if not self._failing:
            self._failing = True
            log.error("deployment capacity unavailable (%s: %s); attempts go ahead",
                      type(exc).__name__, str(exc) or "no detail")  # fmt: skip

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("deployment capacity answering again")
