"""The gateway's own spans. Only when tracing is on: the proxy and the cache client hold
``tracer: Tracer | None`` and run none of this when it is None.

- One span per proxied request, from arrival to the last byte (streams included), a
  child of the FastAPI instrumentation's HTTP server span. It follows the OpenTelemetry
  GenAI semantic conventions: CLIENT kind, named ``{gen_ai.operation.name}
  {gen_ai.request.model}`` (``chat gpt-4o-mini``, ``embeddings text-embedding-3-small``;
  the operation alone until the model is known), with ``gen_ai.provider.name`` (and the
  older ``gen_ai.system``), ``gen_ai.request.model`` and the request's sampling
  parameters, ``gen_ai.response.model`` when the answer names it, and
  ``gen_ai.usage.input_tokens``/``output_tokens``. WatchLLM's own are ``watchllm.*``:
  cache outcome and similarity, cost and cost saved, stream, upstream attempts,
  status, request, project and key ids. A failed request has ``error.type`` and an
  error status.
- Its context rides in the request's event and cache store (the ``traceparent`` field,
  ``contracts.trace_context``), so the cache store, the limiter's charge and the
  analytics insert join the request's trace; the semantic ask carries the context of
  the cache lookup span (``cache_client``).

Upstream calls (aiohttp), Redis and Postgres calls made while the span is current are
its children, through the instrumentations installed in ``__main__``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from watchllm_gateway.endpoints import EndpointSpec
from watchllm_gateway.exchange import Exchange
from watchllm_shared.contracts import RequestStatus

OPERATIONS = {
    "/v1/chat/completions": "chat", "/v1/messages": "chat", "/v1/embeddings": "embeddings",
}  # fmt: skip
# Request body key → GenAI attribute, recorded when the value is a number.
_PARAMETERS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
    ("n", "gen_ai.request.choice.count"),
)


def start_request_span(tracer: Tracer, spec: EndpointSpec) -> Span:
    operation = OPERATIONS.get(spec.path, spec.path)
    return tracer.start_span(
        operation, kind=SpanKind.CLIENT, attributes={"gen_ai.operation.name": operation}
    )


def describe_request(span: Span, spec: EndpointSpec, model: str, body: dict[str, Any]) -> None:
    """Once the body is parsed: the span's name and the request's GenAI attributes."""
    span.update_name(f"{OPERATIONS.get(spec.path, spec.path)} {model}")
    attributes: dict[str, AttributeValue] = {"gen_ai.request.model": model}
    for key, attribute in _PARAMETERS:
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[attribute] = value
    span.set_attributes(attributes)


def response_model(body: Any) -> str | None:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def finish_request_span(span: Span, exchange: Exchange) -> None:
    """After the last byte: the outcome's attributes, then the end of the span."""
    attributes: dict[str, AttributeValue] = {
        "watchllm.request_id": exchange.request_id,
        "watchllm.cache": exchange.cache.value,
        "watchllm.stream": exchange.stream,
        "watchllm.status": exchange.status.value,
        "watchllm.upstream.attempts": exchange.upstream_attempts,
        "watchllm.cost_usd": float(exchange.cost_usd),
        "watchllm.cost_saved_usd": float(exchange.cost_saved_usd),
        # What the provider counted for this request: 0 on a cache hit.
        "gen_ai.usage.input_tokens": exchange.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": exchange.usage.completion_tokens,
    }
    if exchange.provider is not None:
        attributes["gen_ai.provider.name"] = exchange.provider
        attributes["gen_ai.system"] = exchange.provider
    if exchange.response_model is not None:
        attributes["gen_ai.response.model"] = exchange.response_model
    if exchange.cache_similarity is not None:
        attributes["watchllm.cache.similarity"] = exchange.cache_similarity
    if exchange.grant is not None:
        attributes["watchllm.project_id"] = str(exchange.grant.project_id)
        attributes["watchllm.key_id"] = str(exchange.grant.key_id)
    if exchange.status is not RequestStatus.OK:
        attributes["error.type"] = exchange.error_type or exchange.status.value
        span.set_status(Status(StatusCode.ERROR, exchange.error_type))
    span.set_attributes(attributes)
    span.end()
