"""The request path: authenticate, read, validate, route, forward, answer, record.

Every exit, success or error, goes through ``_finish`` (unary) or the stream
generator's ``finally``, which records metrics and publishes exactly one
``RequestCompleted`` event after the last byte was handed to the server. A refused
request's event still says what is known: a revoked key's project and key, and the
model its body named when the body is small (``intake.peek``). A body is read only
after its key was found (``intake``): a caller without a working key never gets the
gateway to hold its body.

Upstream answers are mapped as follows (read in the caller's shape: ``translation``
turns a deployment's answer of the other shape into it): 2xx are relayed byte for byte
(streams event by event); 3xx (never followed, see ``upstream``) → 502; 401/403 from the provider
mean the gateway's provider key is wrong, which is not the caller's fault → 502; other
4xx (and 429 after retries) are relayed with their status and body, already in the
caller's provider shape — unless the body is not JSON (an HTML page from a proxy in
front of the provider), which gets the gateway's own error body in the caller's shape
and the same status, so SDKs still parse it; 5xx after retries → 502. A stream that
breaks after it started ends with an error event in the provider's stream format, so
SDKs raise instead of returning a silently truncated answer.

Requests in flight are counted from admission (``_admit``) until that same record, or
an unexpected error, releases them (``concurrency``).

Bodies are logged only when the operator sets ``WATCHLLM_LOG_BODIES=true`` (first
64 KiB, through the redacting log filter); keys are never logged. Stored bodies are
another matter, per project (``body_log``): copied on the way, redacted and published
in ``_record``, after the last byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from decimal import Decimal
from typing import Any

import orjson
from opentelemetry.trace import Tracer, use_span
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from watchllm_gateway.attribution import read_attribution
from watchllm_gateway.auth import KeyAuthenticator, KeyRevoked, extract_key
from watchllm_gateway.body_log import BodyLog
from watchllm_gateway.cache_client import CacheHit
from watchllm_gateway.cache_flow import (
    CachePlan,
    CacheSupport,
    hit_response,
    store_request,
    wants_usage,
)
from watchllm_gateway.cache_shapes import StreamAssembler
from watchllm_gateway.concurrency import Concurrency
from watchllm_gateway.endpoints import EndpointSpec
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.event_stream import EventStreamResponse
from watchllm_gateway.events import StreamPublisher
from watchllm_gateway.exchange import Exchange, status_for_http
from watchllm_gateway.intake import Intake, named_model, parse_object
from watchllm_gateway.metrics import GatewayMetrics, ModelLabel
from watchllm_gateway.model_access import ModelAccess
from watchllm_gateway.pricing import PriceTable
from watchllm_gateway.ratelimit import RateLimiter
from watchllm_gateway.routing import Dispatcher, ModelRouter
from watchllm_gateway.streaming import relay_stream
from watchllm_gateway.tracing import (
    describe_request,
    finish_request_span,
    response_model,
    start_request_span,
)
from watchllm_gateway.translation import Outbound
from watchllm_gateway.unpriced import UnpricedUse
from watchllm_gateway.upstream import UpstreamBodyError, UpstreamResponse, provider_headers
from watchllm_shared.accounts import KeyGrant
from watchllm_shared.contracts import CacheOutcome, RequestStatus
from watchllm_shared.contracts.cache import CacheStore
from watchllm_shared.contracts.trace_context import trace_fields

log = logging.getLogger(__name__)

_JSON = "application/json"


class Proxy:
    def __init__(
        self,
        auth: KeyAuthenticator,
        router: ModelRouter,
        dispatcher: Dispatcher,
        prices: PriceTable,
        events: StreamPublisher,
        metrics: GatewayMetrics,
        intake: Intake,
        limiter: RateLimiter | None = None,
        cache: CacheSupport | None = None,
        log_bodies: bool = False,
        tracer: Tracer | None = None,
        default_models: Sequence[str] = ("*",),
        concurrency: Concurrency | None = None,
        bodies: BodyLog | None = None,
    ) -> None:
        self._bodies = bodies  # projects that log bodies: published after the last byte
        self._auth = auth
        self._concurrency = concurrency  # requests in flight: admitted, then left
        self._router = router
        self._dispatcher = dispatcher
        self._prices = prices
        # A caller's model name labels a metric only when configured (``metrics``).
        self._model_label = ModelLabel(prices.models() | router.configured_models())
        self._unpriced = UnpricedUse(metrics.unpriced, self._model_label)
        # Projects without a list of models get ``default_models`` (``model_access``).
        self.access = ModelAccess(default_models, lambda m: prices.price_of(m) is not None)
        self._events = events
        self._metrics = metrics
        self._intake = intake
        self._log_bodies = log_bodies
        self._limiter = limiter
        self._cache = cache
        self._tracer = tracer  # None: tracing is off, no span code runs (see ``tracing``)

    @property
    def traced(self) -> bool:
        return self._tracer is not None

    async def authenticate(self, key: str) -> KeyGrant:
        return await self._auth.authenticate(key)

    async def handle(self, request: Request, spec: EndpointSpec) -> Response:
        exchange = Exchange(spec)
        if self._tracer is not None:
            return await self._handle_traced(request, exchange, self._tracer)
        try:
            return await self._forward(request, exchange)
        except GatewayError as error:
            return self._refuse(exchange, error)
        except BaseException:  # no record will run: the app's 500 handler answers
            self._left(exchange)
            raise

    async def _handle_traced(
        self, request: Request, exchange: Exchange, tracer: Tracer
    ) -> Response:
        """``handle`` inside the request's span; it ends in ``_record``, after the last byte."""
        span = exchange.span = start_request_span(tracer, exchange.spec)
        try:
            with use_span(span, end_on_exit=False):
                try:
                    return await self._forward(request, exchange)
                except GatewayError as error:
                    return self._refuse(exchange, error)
        except BaseException:  # no event either: the app's 500 handler answers
            span.end()
            self._left(exchange)
            raise

    def _refuse(self, exchange: Exchange, error: GatewayError) -> Response:
        exchange.fail(error.status, status_for_http(error.status), error.code)
        exchange.upstream_attempts = error.upstream_attempts or exchange.upstream_attempts
        return self._finish(exchange, error.render(exchange.spec.api, exchange.request_id))

    async def _forward(self, request: Request, exchange: Exchange) -> Response:
        spec = exchange.spec
        headers = request.headers
        key = extract_key(headers.get("authorization"), headers.get("x-api-key"))
        try:  # before any of the body is read (``intake``)
            grant = exchange.grant = await self._auth.authenticate(key)
        except KeyRevoked as revoked:  # still the project's and the key's request
            exchange.grant = revoked.grant
            small_body = await self._intake.peek(request, revoked.grant.project_id)
            exchange.model = named_model(small_body)  # what was asked for, for the record
            raise
        attribution = read_attribution(request.scope["headers"])  # a bad one: 400, body unread
        raw = await self._intake.read(request, grant.project_id)
        if self._log_bodies:
            log.info("request %s %s body: %s", exchange.request_id, spec.path, raw[:65536])
        body = parse_object(raw)
        exchange.attribute(attribution, body, raw)  # also on the record of a refused body
        exchange.model = named_model(body)  # recorded even when validation refuses it
        spec.validate(body)
        model: str = body["model"]
        exchange.model = model
        exchange.stream = body.get("stream") is True
        if exchange.span is not None:
            describe_request(exchange.span, spec, model, body)
        routed = self._router.chain(model, spec.api, spec.translatable)
        exchange.provider = spec.api.value
        self.access.check(model, grant)  # after routing: an unrouted model stays a 404
        forwarded = provider_headers(spec.api, headers)
        outbound = Outbound(spec, body, forwarded)  # per deployment, translated if need be
        chain = outbound.reachable(routed)  # an untranslatable request: 400 before any charge
        cache = self._cache
        plan = cache.plan(grant, spec, body, headers, forwarded) if cache else None
        exchange.cache_plan = plan
        if plan is not None and plan.semantic_skipped is not None:
            self._metrics.cache_semantic_skipped.labels(plan.semantic_skipped).inc()
        hit = await self._admit(exchange, plan)
        if hit is not None:
            return self._serve_hit(exchange, hit, wants_usage(body))
        dispatched = await self._dispatcher.send(chain, outbound)
        answer = exchange.answered_by(dispatched, outbound.answer(dispatched))
        if answer.status >= 300:
            return await self._relay_error(exchange, answer)
        if exchange.stream:
            return self._stream(exchange, answer, outbound.caller_wants_usage)
        return await self._unary(exchange, answer)

    async def _admit(self, exchange: Exchange, plan: CachePlan | None) -> CacheHit | None:
        """Ask the limiter and the cache at once (the semantic layer only once the limiter
        said yes); raises 429 when the limiter refuses, or when a budget is spent and the
        cache did not answer (a hit costs nothing: ``budgets``)."""
        assert exchange.grant is not None
        if self._concurrency is not None:  # this replica's share of the pool, or 429
            self._concurrency.enter(exchange.grant, exchange.request_id)
        limiter, grant, request_id = self._limiter, exchange.grant, exchange.request_id
        if plan is None or not plan.policy.read or self._cache is None:
            admitted = await limiter.admit(grant, request_id) if limiter else None  # no tasks
            exchange.limit_headers = admitted.headers if admitted is not None else {}
            return None
        # The cache may answer: a spent budget refuses only if it does not (``budgets``).
        limit = limiter.admit(grant, request_id, cache_may_answer=True) if limiter else None
        # The exact GET goes at once; a semantic ask waits for the limiter's yes (it has
        # it by then, ~0.2 ms): a refused request puts no question into Redis.
        admission = asyncio.ensure_future(limit) if limit is not None else None
        lookup = self._cache.client.lookup(
            exchange.request_id, plan.project_id, plan.exact_key, plan.semantic,
            plan.policy.threshold, plan.policy.min_threshold, admission,
        )  # fmt: skip
        outcomes: tuple[Any, Any] = await asyncio.gather(
            admission if admission is not None else _maybe(None), lookup, return_exceptions=True
        )
        admitted, hit = outcomes
        if isinstance(admitted, BaseException):
            raise admitted  # refused: the cache was not used (its outcome stays bypass)
        exchange.limit_headers = admitted.headers if admitted is not None else {}
        exchange.cache = CacheOutcome.MISS  # a hit is marked by ``_serve_hit``
        if not isinstance(hit, CacheHit):
            if admitted is not None and admitted.unless_cached is not None:
                raise admitted.unless_cached  # a spent budget, and no free answer
            return None
        return hit

    def _serve_hit(self, exchange: Exchange, hit: CacheHit, include_usage: bool) -> Response:
        exchange.cache = CacheOutcome.HIT
        exchange.cache_similarity = hit.similarity
        exchange.cache_key = hit.key
        exchange.cost_saved_usd = Decimal(hit.answer.cost_usd)
        if exchange.span is not None:
            exchange.response_model = hit.answer.model
        exchange.mark_first_byte()
        if exchange.bodies is not None:  # the answer served, logged like any other
            exchange.bodies.answer = hit.answer.body.encode()
        response = hit_response(exchange.spec, hit, exchange.stream, include_usage)
        if hit.similarity is not None:
            response.headers["x-watchllm-cache-similarity"] = f"{hit.similarity:.4f}"
        return self._finish(exchange, response)

    async def _unary(self, exchange: Exchange, answer: UpstreamResponse) -> Response:
        try:
            content = await answer.read()
        except UpstreamBodyError as exc:
            if exc.timed_out:
                raise GatewayError(504, "upstream_timeout", "The upstream timed out") from exc
            raise GatewayError(502, "upstream_error", "The upstream connection broke") from exc
        finally:
            answer.close()
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(502, "upstream_error", "The upstream sent invalid JSON") from exc
        exchange.usage = exchange.spec.usage_from_body(parsed)
        if exchange.span is not None:
            exchange.response_model = response_model(parsed)
        if self._log_bodies:
            log.info("response %s body: %s", exchange.request_id, content[:65536])
        self._price(exchange)
        exchange.store = self._store_request(exchange, parsed)
        exchange.mark_first_byte()
        return self._finish(exchange, Response(content, 200, media_type=_JSON))

    def _store_request(self, exchange: Exchange, parsed: Any) -> CacheStore | None:
        if exchange.model is None or exchange.fallback_model is not None:
            return None  # a fallback's answer is not the requested model's to cache
        tokens = (exchange.usage.prompt_tokens, exchange.usage.completion_tokens)
        return store_request(exchange.cache_plan, exchange.spec, exchange.request_id,
                             exchange.model, parsed, tokens, exchange.cost_usd)  # fmt: skip

    async def _relay_error(self, exchange: Exchange, answer: UpstreamResponse) -> Response:
        try:
            content = await answer.read()
        except UpstreamBodyError:
            content = b""
        finally:
            answer.close()
        status = answer.status
        if status < 400:  # a redirect: never followed (see ``upstream``)
            raise GatewayError(
                502, "upstream_error",
                f"The upstream provider answered with a redirect (HTTP {status}); WatchLLM"
                " does not follow redirects: the operator must fix the route's base URL",
            )  # fmt: skip
        if status in (401, 403):
            raise GatewayError(
                502, "upstream_auth_failed",
                f"The upstream provider rejected the gateway's credentials ({status});"
                " the operator must fix the provider key for this route",
            )  # fmt: skip
        if status >= 500 or not content:
            raise GatewayError(
                502, "upstream_error",
                f"The upstream provider failed with HTTP {status} after"
                f" {answer.attempts} attempt(s)",
            )  # fmt: skip
        headers = {}
        if "retry-after" in answer.headers:
            headers["retry-after"] = answer.headers["retry-after"]
        if not _is_json(content):  # e.g. an HTML page from a proxy in front of the provider
            raise GatewayError(
                status, "upstream_" + str(status),
                f"The upstream provider refused the request with HTTP {status}"
                " (its answer was not JSON)",
                headers=headers,
            )  # fmt: skip
        exchange.fail(status, status_for_http(status), "upstream_" + str(status))
        return self._finish(exchange, Response(content, status, headers, media_type=_JSON))

    def _stream(
        self, exchange: Exchange, answer: UpstreamResponse, caller_wants_usage: bool
    ) -> Response:
        plan = exchange.cache_plan
        assembler = (
            StreamAssembler(exchange.spec.path) if plan is not None and plan.policy.write else None
        )
        exchange.assembler = assembler
        events = relay_stream(exchange, answer, caller_wants_usage, self._complete_stream)
        return EventStreamResponse(events, self._headers(exchange))

    def _complete_stream(self, exchange: Exchange) -> None:
        self._price(exchange)
        assembled = exchange.assembler.result() if exchange.assembler is not None else None
        if exchange.status is RequestStatus.OK and assembled is not None:
            exchange.store = self._store_request(exchange, assembled)
        if exchange.span is not None:
            exchange.response_model = response_model(assembled)
        self._record(exchange)

    def _price(self, exchange: Exchange) -> None:
        if exchange.model is None:
            return
        cost = self._prices.cost(  # the model that answered
            exchange.upstream_model or exchange.model,
            exchange.usage.prompt_tokens, exchange.usage.completion_tokens,
        )  # fmt: skip
        exchange.unpriced = cost is None
        if cost is None:
            self._unpriced.record(exchange.model)
        else:
            exchange.cost_usd = cost

    def _headers(self, exchange: Exchange) -> dict[str, str]:
        return {
            "x-request-id": exchange.request_id,
            "x-watchllm-cache": exchange.cache.value,
            **exchange.limit_headers,
            **(
                {"x-watchllm-cache-key": exchange.cache_plan.exact_key}
                if exchange.cache_plan is not None
                else {}
            ),
            **(
                {"x-watchllm-cache-semantic-skipped": exchange.cache_plan.semantic_skipped}
                if exchange.cache_plan is not None and exchange.cache_plan.semantic_skipped
                else {}
            ),
        }

    def _finish(self, exchange: Exchange, response: Response) -> Response:
        response.headers.update(self._headers(exchange))
        if exchange.bodies is not None:
            exchange.bodies.answered(response)
        # An async task: Starlette runs a plain function in a worker thread.
        response.background = BackgroundTask(self._record_async, exchange)
        return response

    async def _record_async(self, exchange: Exchange) -> None:
        self._record(exchange)

    def _record(self, exchange: Exchange) -> None:
        """Runs after the last byte was handed over: metrics, then the event."""
        self._left(exchange)
        self._dispatcher.used(exchange.dispatched, exchange.usage.total)
        latency = exchange.elapsed()
        self._metrics.observe_request(exchange.spec.path, exchange.http_status, latency,
                                      exchange.ttfb)  # fmt: skip
        fields = exchange.to_event(latency).to_stream_fields()
        context: dict[str, str] = {}
        if exchange.span is not None:  # the consumers' spans join the request's trace
            finish_request_span(exchange.span, exchange)
            context = trace_fields(exchange.span)
        self._events.publish({**fields, **context} if context else fields)
        if exchange.store is not None and self._cache is not None:
            self._cache.stores.publish({"data": exchange.store.model_dump_json(), **context})
        if self._bodies is not None:
            self._bodies.publish(exchange)  # redacted and capped here, after the answer

    def _left(self, exchange: Exchange) -> None:
        if self._concurrency is not None:
            self._concurrency.leave(exchange.request_id)


def _is_json(content: bytes) -> bool:
    try:
        orjson.loads(content)
    except orjson.JSONDecodeError:
        return False
    return True


async def _maybe(awaitable: Awaitable[Any] | None) -> Any:
    return None if awaitable is None else await awaitable
