"""The cache's part of the request path: decide, serve a hit, prepare the store.

Only chat completions and messages are cached, only when the project allows it and
the request does not opt out, and only complete text answers (``cache_shapes``). A hit
is served in the request's shape — JSON, or SSE for a streaming request — costs no
upstream call, bills no tokens (the limiter charges nothing for it) and records what
it saved (the original answer's cost) in the event.

The provider headers forwarded upstream with the request (``upstream``'s pass-through
list for the endpoint's provider: ``anthropic-version`` — with the default the gateway
sends when it is absent — and ``anthropic-beta``; ``openai-beta``) change the answer, so
they are part of the exact key and of the semantic scope (``forwarded_headers``):
requests that differ in them never share an entry.

Exact keys are keyed with the server secret ``WATCHLLM_CACHE_KEY_SECRET``
(``contracts.cache_keys``): the gateway alone computes them, the cache service stores
under the key the store message names, so only gateways need the secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from starlette.responses import Response

from watchllm_gateway.cache_client import CacheClient, CacheHit
from watchllm_gateway.cache_control import CachePolicy, cache_policy
from watchllm_gateway.cache_shapes import replay_events, storable
from watchllm_gateway.endpoints import CHAT_COMPLETIONS, MESSAGES, EndpointSpec
from watchllm_gateway.event_stream import EventStreamResponse
from watchllm_gateway.events import StreamPublisher
from watchllm_shared.accounts import KeyGrant
from watchllm_shared.contracts.cache import (
    MAX_SEMANTIC_QUESTION_CHARS,
    CachedAnswer,
    CacheStore,
)
from watchllm_shared.contracts.cache_keys import exact_cache_key, semantic_parts

_CACHED_ENDPOINTS = (CHAT_COMPLETIONS.path, MESSAGES.path)
# Why a request in a semantic project did not ask the semantic layer: the
# ``x-watchllm-cache-semantic-skipped`` header and ``watchllm_cache_semantic_skipped_total``.
QUESTION_TOO_LONG = "question-too-long"


@dataclass(frozen=True, slots=True)
class CacheSupport:
    client: CacheClient
    stores: StreamPublisher
    key_secret: bytes  # WATCHLLM_CACHE_KEY_SECRET: exact keys are keyed with it

    def plan(
        self,
        grant: KeyGrant,
        spec: EndpointSpec,
        body: dict[str, Any],
        headers: Mapping[str, str],
        forwarded: Mapping[str, str],
    ) -> CachePlan | None:
        """``plan_cache`` with this deployment's key secret."""
        return plan_cache(grant, spec, body, headers, forwarded, secret=self.key_secret)


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What the cache may do for one request."""

    policy: CachePolicy
    project_id: UUID
    exact_key: str
    semantic: tuple[str, str] | None  # (scope, question)
    semantic_skipped: str | None = None  # why a semantic project's request skips the layer


def plan_cache(
    grant: KeyGrant,
    spec: EndpointSpec,
    body: dict[str, Any],
    headers: Mapping[str, str],
    forwarded: Mapping[str, str],
    *,
    secret: bytes,
) -> CachePlan | None:
    """None when the cache stays out of this request (then it is a ``bypass``).
    ``forwarded``: the provider headers sent upstream (``upstream.provider_headers``),
    part of the key and the scope since they select API versions and beta features;
    ``secret``: the exact keys' (``WATCHLLM_CACHE_KEY_SECRET``)."""
    if spec.path not in _CACHED_ENDPOINTS:
        return None
    policy = cache_policy(grant.cache, headers)  # raises 400 on a malformed header
    if not policy.active:
        return None
    semantic = semantic_parts(spec.path, body, forwarded) if policy.semantic else None
    skipped = None
    if semantic is not None and len(semantic[1]) > MAX_SEMANTIC_QUESTION_CHARS:
        # The exact layer only: the question is neither sent to be embedded nor stored
        # (``contracts.cache``: the model reads 256 tokens; a 4 MB question cost the cache
        # service seconds, and every tenant's asks waited behind it).
        semantic, skipped = None, QUESTION_TOO_LONG
    return CachePlan(policy, grant.project_id,
                     exact_cache_key(grant.project_id, spec.path, body, forwarded, secret=secret),
                     semantic, skipped)  # fmt: skip


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def hit_response(spec: EndpointSpec, hit: CacheHit, stream: bool, include_usage: bool) -> Response:
    if not stream:
        return Response(hit.answer.body, 200, media_type="application/json")
    events = replay_events(spec.path, orjson.loads(hit.answer.body), include_usage)

    async def replay() -> Any:
        for event in events:
            yield event

    return EventStreamResponse(replay())


def store_request(
    plan: CachePlan | None,
    spec: EndpointSpec,
    request_id: str,
    model: str,
    parsed: Any,
    tokens: tuple[int, int],
    cost: Decimal,
) -> CacheStore | None:
    """The store message for a successful answer, or None when it must not be cached."""
    if plan is None or not plan.policy.write or not storable(spec.path, parsed):
        return None
    answer = CachedAnswer(endpoint=spec.path, model=model,  # type: ignore[arg-type]
                          body=orjson.dumps(parsed).decode(), prompt_tokens=tokens[0],
                          completion_tokens=tokens[1], cost_usd=str(cost))  # fmt: skip
    scope, question = plan.semantic if plan.semantic else (None, None)
    return CacheStore(request_id=request_id, project_id=plan.project_id,
                      exact_key=plan.exact_key, scope=scope, question=question,
                      ttl_seconds=plan.policy.ttl_seconds, answer=answer)  # fmt: skip
