"""Requests in flight per project and per key (issue 22, finding 7: 60 slow-reading
streams from one tenant held a 50-connection upstream pool, and another tenant's
requests timed out with 504).

Two guards, both in effect from admission until the request's last byte:

- **Concurrency limits, exact across replicas.** A project may have at most
  ``concurrency`` requests in flight (its own limit, set with ``watchllm projects limits
  NAME --concurrency N``, else the gateway's default ``WATCHLLM_PROJECT_CONCURRENCY``),
  a key at most its own (``watchllm keys limits KEY_ID --concurrency N``). They are
  decided in Redis inside the limiter's one ``FCALL`` (``ratelimit``; the library's
  ``concurrency.lua``), so a refusal takes nothing: 429 ``concurrency_limit_exceeded``
  with ``x-ratelimit-limit-concurrency``. An admitted request holds a slot in its
  project's (and key's) in-flight set, a member with a lease. This module renews the
  leases of this replica's requests every third of a lease and removes each slot when
  its request ends; a replica killed without a word (SIGKILL, OOM) renews nothing more,
  so its slots lapse within ``WATCHLLM_CONCURRENCY_LEASE_SECONDS``.
- **A fair share of this replica's upstream pool.** One project may hold at most
  ``WATCHLLM_UPSTREAM_PROJECT_SHARE`` (a quarter) of ``WATCHLLM_UPSTREAM_MAX_CONNECTIONS``
  here, counted in memory, before Redis is asked: 429 ``concurrency_limit_exceeded``,
  naming the replica's share. The limits above are global: a project whose limit is
  above one replica's pool (an operator raised it for a fleet), or a limiter failing
  open, would otherwise let one tenant take a replica's whole pool again.

Why a share and no fair queue: a request waiting for an upstream connection waits in
aiohttp's queue behind everyone (first come, first served) and fails at the connect
timeout (504). With every project held to a quarter of the pool, a tenant that floods
gets 429 at once and never holds more than that quarter, so a quiet tenant finds a free
connection unless four or more tenants fill their whole shares at the same time, which
an operator sizes against (a lower share or default, a larger pool, more replicas).
Serving waiting requests round-robin by project would also bound that case, but a
waiting request still holds its caller, its body and a slot; refusing early keeps the
pool's wait short for everyone.

What ends a request (``leave``, idempotent) is ``proxy``'s one record of it: a unary
answer after its last byte, a stream in its relay's ``finally`` (completed, upstream
broke or timed out, caller disconnected), a refusal, and an unexpected error. Slots are
removed from Redis in batches (one pipeline per turn of the loop); when Redis does not
answer, the leases lapse instead. A replica paused longer than a lease (its renewals
late) lets its requests' slots lapse while they still run: then up to that many more
requests may start. The lease is renewed with ``ZADD XX`` (``watchllm_concurrency_renew``),
never re-taking a slot that was released or lapsed. An ask whose answer was lost (the
limiter's failure policy applied) may still have taken its slot: nobody renews it, and it
counts against the project until its lease ends. With the limiter off
(``WATCHLLM_LIMITER_ENABLED=false``) or failing open, only the replica's share applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from uuid import UUID

from redis.exceptions import RedisError

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_shared.accounts import KeyGrant
from watchllm_shared.contracts.limits import RENEW_FUNCTION, inflight_key
from watchllm_shared.redis_packed import Argument, PackedCommands

log = logging.getLogger(__name__)

_RENEW_BATCH = 500  # request ids per renewal call (Lua's unpack has a stack limit)


def concurrency_refused(
    limit: int, scope: str, headers: dict[str, str] | None = None
) -> GatewayError:
    """The 429 for a concurrency limit: ``scope`` says whose (``this project``…)."""
    return GatewayError(
        429, "concurrency_limit_exceeded",
        f"Too many requests in flight for {scope} (limit {limit}); retry when one of"
        " them has finished",
        headers={"retry-after": "1", "x-ratelimit-limit-concurrency": str(limit),
                 "x-ratelimit-remaining-concurrency": "0", **(headers or {})},
    )  # fmt: skip


@dataclass(slots=True)
class _Slot:
    project_id: UUID
    key_id: UUID
    in_redis: bool = False


class Concurrency:
    """This replica's requests in flight: its share of the pool, and their slots in
    Redis (leases renewed, released when they end)."""

    def __init__(
        self, commands: PackedCommands, project_share: int, lease_seconds: float,
        metrics: GatewayMetrics | None = None,
    ) -> None:  # fmt: skip
        self._commands = commands
        self.project_share = project_share  # requests in flight per project, here
        self.lease_ms = math.ceil(lease_seconds * 1000)
        self._by_project: dict[UUID, int] = {}
        self._slots: dict[str, _Slot] = {}  # request id -> its slot
        self._released: list[tuple[_Slot, str]] = []
        self._releasing: asyncio.Task[None] | None = None
        self._release_failing = False
        self._renewer: asyncio.Task[None] | None = None
        self._refused = None
        if metrics is not None:
            self._refused = metrics.concurrency_refused.labels("replica")
            metrics.in_flight.set_function(lambda: len(self._slots))

    def in_flight(self, project_id: UUID) -> int:
        return self._by_project.get(project_id, 0)

    def enter(self, grant: KeyGrant, request_id: str) -> None:
        """Take a place in the project's share of this replica, or raise 429."""
        held = self._by_project.get(grant.project_id, 0)
        if held >= self.project_share:
            if self._refused is not None:
                self._refused.inc()
            raise concurrency_refused(
                self.project_share,
                "this project on this gateway replica (its share of the upstream pool)",
            )
        self._by_project[grant.project_id] = held + 1
        self._slots[request_id] = _Slot(grant.project_id, grant.key_id)

    def hold(self, request_id: str) -> None:
        """The limiter admitted the request and gave it a slot in Redis: renew it until
        the request leaves."""
        slot = self._slots.get(request_id)
        if slot is not None:
            slot.in_redis = True

    def leave(self, request_id: str) -> None:
        """The request ended (any way): free its place here and its slot in Redis."""
        slot = self._slots.pop(request_id, None)
        if slot is None:
            return
        held = self._by_project[slot.project_id] - 1
        if held:
            self._by_project[slot.project_id] = held
        else:
            del self._by_project[slot.project_id]
        if slot.in_redis:
            self._released.append((slot, request_id))
            if self._releasing is None:
                self._releasing = asyncio.ensure_future(self._release())

    async def _release(self) -> None:
        """Remove every released slot from Redis, a pipeline per batch."""
        try:
            while self._released:
                batch, self._released = self._released, []
                commands = [
                    ("ZREM", inflight_key(slot.project_id, key), request_id)
                    for slot, request_id in batch
                    for key in (None, slot.key_id)
                ]
                try:
                    await self._commands.call_many(commands, raise_errors=False)
                except (RedisError, OSError) as exc:  # their leases lapse instead
                    if not self._release_failing:  # once per episode, not per request
                        log.warning("could not release %d concurrency slots (%s: %s); they"
                                    " lapse within %d ms", len(batch), type(exc).__name__,
                                    exc, self.lease_ms)  # fmt: skip
                    self._release_failing = True
                else:
                    self._release_failing = False
        finally:
            self._releasing = None

    def start(self) -> None:
        self._renewer = asyncio.create_task(self._renew_forever(), name="concurrency-leases")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._releasing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._releasing

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.renew()
            except (RedisError, OSError) as exc:
                log.warning("could not renew concurrency leases (%s: %s)",
                            type(exc).__name__, exc)  # fmt: skip

    async def renew(self) -> None:
        """Push the lease of every slot this replica holds in Redis."""
        groups: dict[tuple[UUID, UUID], list[str]] = {}
        for request_id, slot in self._slots.items():
            if slot.in_redis:
                groups.setdefault((slot.project_id, slot.key_id), []).append(request_id)
        commands: list[tuple[Argument, ...]] = []
        for (project_id, key_id), ids in groups.items():
            keys = (inflight_key(project_id), inflight_key(project_id, key_id))
            for start in range(0, len(ids), _RENEW_BATCH):
                commands.append(("FCALL", RENEW_FUNCTION, 2, *keys, self.lease_ms, "",
                                 *ids[start : start + _RENEW_BATCH]))  # fmt: skip
        if commands:
            await self._commands.call_many(commands, raise_errors=False)
