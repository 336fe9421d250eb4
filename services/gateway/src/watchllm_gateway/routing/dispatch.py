"""Sending a request until a deployment answers: other deployments, then fallbacks.

``Dispatcher.send`` walks a request's chain (``ModelRouter.chain``: the model's
deployments, then each fallback model's, in order). Each attempt goes to a deployment
the ``Balancer`` picks among the healthy ones the request has not tried; a fallback
model is sent with the request's ``model`` rewritten (or the deployment's own upstream
model name). When no untried healthy deployment is left anywhere in the chain, the one
whose cooldown ends first is tried again, after a capped exponential backoff with
jitter that honours a short ``retry-after`` (at most ``_MAX_RETRY_WAIT_SECONDS``) —
what the gateway did for its single upstream before deployments existed.

Among a model's healthy deployments the ``Balancer`` weighs weight and observed latency
(every answer's time to headers feeds it).

A deployment with ``rpm``/``tpm`` asks ``capacity`` before each attempt (one call to
Redis, exact across replicas): when its window is full it is skipped for this request,
not counted as an attempt, never cooled down (it is healthy, only busy), and the pick
goes on among the others and the fallbacks. When nothing is left but full deployments
and no attempt was made, the answer is a 429 ``deployment_capacity_exceeded`` with
``retry-after`` (when the first slot frees), in the caller's shape. The tokens an
answer used are charged to its deployment's ``tpm`` afterwards (``used``).

What fails over, and what does not:
- 429 and 5xx answers, refused connections, connect timeouts: cooled down, and the
  request moves on (the same deployment may be asked again, last);
- a connection broken after the request was written, a read timeout before the
  answer's headers: cooled down, and the request moves to *another* deployment only —
  never resent to the one that may have it (it may be generating and billing it);
- any other answer (2xx, 3xx, 4xx — the caller's 400/401/403/404/413/422 above all) is
  the answer: never retried nor fallen back on — except a 400 saying the prompt is over
  the model's context window when the entry has ``context_window_fallbacks``: the
  request then goes to those models (and only those), in order;
- the first 2xx ends dispatching: a stream is the caller's from its first byte, and a
  stream that breaks later is never retried (``streaming`` ends it with an error event).

Bounds: at most ``max_attempts`` attempts in all (``upstream_max_retries`` + 1), and
no attempt starts once ``deadline_seconds`` have passed since the first began. When
they run out, the last failure is the answer: a 429/5xx answer is returned for
``proxy`` to map as before, a failure without an answer raises its ``GatewayError``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.routing.balancer import Balancer
from watchllm_gateway.routing.capacity import DeploymentCapacity
from watchllm_gateway.routing.metrics import RoutingMetrics
from watchllm_gateway.routing.table import Candidates, Deployment
from watchllm_gateway.upstream import (
    RETRYABLE_STATUSES,
    AttemptFailed,
    UpstreamBodyError,
    UpstreamClient,
    UpstreamResponse,
    retry_after_seconds,
)

_MAX_RETRY_WAIT_SECONDS = 5.0  # a longer retry-after cools the deployment instead


class Outgoing(Protocol):
    """What one request becomes for each deployment (``translation.Outbound``)."""

    def request(self, deployment: Deployment, model: str) -> tuple[str, bytes, Mapping[str, str]]:
        """Path after the deployment's base URL, body with upstream ``model``, headers."""
        ...


@dataclass(slots=True)
class Dispatched:
    """The answer, and who gave it."""

    answer: UpstreamResponse
    deployment: Deployment
    model: str  # the chain's model that answered: the requested one, or a fallback
    upstream_model: str  # the model name sent upstream
    fallback: bool
    taken: str | None = None  # the attempt's id in its deployment's capacity windows


class Dispatcher:
    def __init__(
        self,
        upstream: UpstreamClient,
        balancer: Balancer,
        metrics: RoutingMetrics,
        max_attempts: int,
        backoff_seconds: float,
        deadline_seconds: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        capacity: DeploymentCapacity | None = None,
    ) -> None:
        self.capacity = capacity  # None: rpm/tpm are not enforced (no Redis: unit tests)
        self._upstream = upstream
        self._balancer = balancer
        self._cooldowns = balancer.cooldowns
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._deadline = deadline_seconds
        self._sleep = sleep

    async def send(self, chain: Sequence[Candidates], outgoing: Outgoing) -> Dispatched:
        """``outgoing.request(deployment, model)``: what one attempt sends."""
        clock = self._cooldowns.clock
        started = clock()
        tried: set[str] = set()
        full: dict[str, int] = {}  # at capacity for now: deployment -> ms until a slot
        spent: set[str] = set()  # may have the request: never sent it again
        failure: GatewayError | None = None
        failed_answer: Dispatched | None = None
        wait_asked: float | None = None
        last_reason: str | None = None
        requested = chain[0].model
        on_context_error = getattr(chain, "context_fallbacks", ())
        attempt = 0
        while attempt < self._max_attempts:
            now = clock()
            pick = self._pick(chain, tried, spent, now, full)
            if pick is None:
                break
            candidates, deployment = pick
            if deployment.name in tried:  # nothing fresh left: the same one, later
                delay = self._delay(attempt, wait_asked)
                if now + delay - started >= self._deadline:
                    break
                await self._sleep(delay)
            elif attempt and now - started >= self._deadline:
                break
            taken = None
            if deployment.limited and self.capacity is not None:
                taken, retry_ms = await self.capacity.take(deployment)  # after any wait
                if retry_ms:
                    full[deployment.name] = retry_ms
                    continue  # busy, not failing: another one, no attempt spent
            if failed_answer is not None:
                failed_answer.answer.close()
                failed_answer = None
            attempt += 1
            tried.add(deployment.name)
            fallback = candidates.model != requested
            fallback_model = candidates.model if fallback else None
            self._metrics.attempt_started(deployment, fallback_model, last_reason)
            upstream_model = deployment.model or candidates.model
            self._cooldowns.begin(deployment.name, clock())
            try:
                answer = await self._upstream.attempt(
                    deployment, *outgoing.request(deployment, upstream_model)
                )
            except AttemptFailed as failed:
                self._cool(deployment, failed.reason, None)
                failure, wait_asked, last_reason = failed.error, None, failed.reason
                if not failed.resendable:
                    spent.add(deployment.name)
                continue
            except BaseException:  # cancelled: the probe, if it was one, may go again
                self._cooldowns.released(deployment.name)
                raise
            answer.attempts = attempt
            self._balancer.observe(deployment.name, answer.latency_seconds)
            done = Dispatched(answer, deployment, candidates.model, upstream_model, fallback, taken)
            status = answer.status
            if status in RETRYABLE_STATUSES:
                wait_asked = retry_after_seconds(answer.headers)
                last_reason = str(status)
                self._cool(deployment, "429" if status == 429 else "5xx", wait_asked)
                failed_answer = done
                continue
            if status == 400 and on_context_error and await _context_exceeded(answer):
                self._metrics.attempt_ended(deployment, "context")
                self._cooldowns.succeeded(deployment.name)
                chain, on_context_error, failed_answer = on_context_error, (), done
                continue  # to the context window fallbacks, and only to them
            self._metrics.attempt_ended(deployment, "answered")
            if status < 300 or (400 <= status < 500 and status not in (401, 403)):
                self._cooldowns.succeeded(deployment.name)  # it answers: healthy
            else:  # a redirect, a refused provider key: not the deployment's health
                self._cooldowns.released(deployment.name)
            return done
        if failed_answer is not None:
            return failed_answer
        if failure is None and full:
            raise _at_capacity(requested, min(full.values()))
        if failure is None:  # unreachable: the chain's first model has a deployment
            failure = GatewayError(502, "upstream_unreachable", "No deployment could be tried")
        failure.upstream_attempts = attempt
        raise failure

    def used(self, dispatched: Dispatched | None, tokens: int) -> None:
        """The answer's tokens, charged to its deployment's ``tpm`` (if it has one)."""
        if dispatched is not None and dispatched.taken is not None and self.capacity:
            self.capacity.charge(dispatched.deployment, dispatched.taken, tokens)

    def _pick(
        self, chain: Sequence[Candidates], tried: set[str], spent: set[str], now: float,
        full: dict[str, int],
    ) -> tuple[Candidates, Deployment] | None:  # fmt: skip
        skip = tried.union(full) if full else tried
        for candidates in chain:
            chosen = self._balancer.choose(candidates.deployments, skip, now)
            if chosen is not None:
                return candidates, chosen
        best: tuple[Candidates, Deployment] | None = None
        never = spent.union(full) if full else spent
        for candidates in chain:
            chosen = self._balancer.last_resort(candidates.deployments, never, now)
            if chosen is not None and (
                best is None
                or self._cooldowns.remaining(chosen.name, now)
                < self._cooldowns.remaining(best[1].name, now)
            ):
                best = candidates, chosen
        return best

    def _cool(self, deployment: Deployment, reason: str, retry_after: float | None) -> None:
        seconds = self._cooldowns.failed(deployment.name, self._cooldowns.clock(), retry_after)
        self._metrics.attempt_ended(deployment, reason)
        self._metrics.cooled(deployment, reason, seconds)

    def _delay(self, attempt: int, wait_asked: float | None) -> float:
        delay = self._backoff * (2.0 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311
        if wait_asked is not None:
            delay = max(delay, min(wait_asked, _MAX_RETRY_WAIT_SECONDS))
        return delay


def _at_capacity(model: str, retry_ms: int) -> GatewayError:
    seconds = max(1, -(-retry_ms // 1000))
    return GatewayError(
        429, "deployment_capacity_exceeded",
        f"Every deployment that serves {model!r} is at its requests or tokens per minute;"
        f" retry in {seconds} s",
        headers={"retry-after": str(seconds), "retry-after-ms": str(retry_ms)},
    )  # fmt: skip


# How OpenAI (and compatible servers) and Anthropic say a prompt is over the context window.
_CONTEXT_MARKERS = (b"context_length_exceeded", b"prompt is too long", b"maximum context length")


async def _context_exceeded(answer: UpstreamResponse) -> bool:
    """A 400 saying the prompt does not fit the model (its body is read, and kept for
    relaying should no context window fallback answer)."""
    try:
        body = await answer.read()
    except UpstreamBodyError:
        return False
    return any(marker in body for marker in _CONTEXT_MARKERS)
