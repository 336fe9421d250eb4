"""One request is one trace across every service.

The gateway, the cache service, the limiter service and the analytics service run as
real processes, each exporting spans over OTLP/HTTP to one loopback receiver. A cache
miss and then a semantic hit go through the official openai SDK; the miss's trace
holds the gateway's spans (HTTP server, the GenAI request span, cache lookup, upstream
call, Redis and Postgres calls), the cache service's ask and store, the limiter's
token charge and the analytics insert, each a child of the span whose context rode in
the Redis message (``traceparent``). The hit's trace holds its own ask and insert.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import redis

from tests.e2e.conftest import gateway_env
from tests.support.events import wait_for_events
from tests.support.otlp import Collector, ReceivedSpan
from tests.support.processes import ServiceProcess, start_cache_service, start_service
from watchllm_shared.contracts import RequestCompleted
from watchllm_shared.contracts.health import HEARTBEAT_SERVICES, heartbeat_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "gpt-4o-mini"
REQUEST_SPAN = f"chat {MODEL}"


@dataclass
class TracedStack:
    gateway: ServiceProcess
    stream: str
    collector: Collector


def start_all(starts: dict[str, Callable[[], ServiceProcess]]) -> dict[str, ServiceProcess]:
    """Start every service at once (the cache service's model load is the long pole)."""
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = {name: pool.submit(start) for name, start in starts.items()}
    started = {name: f.result() for name, f in futures.items() if f.exception() is None}
    failed = [f.exception() for f in futures.values() if f.exception() is not None]
    if failed:
        for service in started.values():
            service.stop()
        raise failed[0]  # type: ignore[misc]
    return started


@pytest.fixture(scope="module")
def traced(
    fake_provider: ServiceProcess, redis_url: str, database_url: str, log_dir: Path,
    tmp_path_factory: pytest.TempPathFactory, limiter_library: None,
) -> Iterator[TracedStack]:  # fmt: skip
    collector = Collector()
    stream = f"test.requests.{uuid.uuid4().hex}"
    data = tmp_path_factory.mktemp("traced")
    env = gateway_env(
        fake_provider.url, redis_url, database_url, stream,
        WATCHLLM_CACHE_ENABLED="true", WATCHLLM_CACHE_TIMEOUT_SECONDS="2",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="100",
    )  # fmt: skip
    analytics_env = {
        **env, "WATCHLLM_CLICKHOUSE_URL": f"chdb://{data / 'clickhouse'}",
        "WATCHLLM_DATA_DIR": str(data), "WATCHLLM_ANALYTICS_CONSUMER_NAME": "traced",
        "WATCHLLM_ANALYTICS_BATCH_MAX_SECONDS": "0.1",
    }  # fmt: skip
    # Four interpreters starting at once on a small machine: generous readiness bounds.
    services = start_all({
        "gateway": lambda: start_service("gateway", env, log_dir, ready="/livez", timeout=90),
        "cache": lambda: start_cache_service(
            {**env, "WATCHLLM_QDRANT_EDGE_PATH": str(data / "qdrant")}, log_dir),
        # Events are read back from the stream here: the limiter must not trim them.
        "limiter": lambda: start_service("limiter", {**env, "WATCHLLM_EVENTS_STREAM_GROUPS": "[]"},
                                         log_dir, timeout=90),
        "analytics": lambda: start_service("analytics", analytics_env, log_dir, timeout=90),
    })  # fmt: skip
    try:
        yield TracedStack(services["gateway"], stream, collector)
    finally:
        for service in services.values():
            service.stop()
        collector.close()
        client = redis.Redis.from_url(redis_url)
        try:  # later tests' gateways read the heartbeats
            client.delete(stream, *(heartbeat_key(s) for s in HEARTBEAT_SERVICES))
        finally:
            client.close()


def ask(client: openai.OpenAI, text: str) -> dict[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": text}]
    )
    return dict(raw.headers)


def event_of(redis_url: str, stack: TracedStack, headers: dict[str, str]) -> RequestCompleted:
    (event,) = wait_for_events(redis_url, stack.stream,
                               lambda e: e.request_id == headers["x-request-id"])  # fmt: skip
    assert event.trace_id is not None
    return event


def trace_holding(
    collector: Collector, trace_id: str, wanted: set[tuple[str, str]]
) -> list[ReceivedSpan]:
    """The trace's spans once it holds a span of every (service, name) in ``wanted``."""

    def complete(spans: list[ReceivedSpan]) -> bool:
        return wanted <= {(s.service, s.name) for s in spans if s.trace_id == trace_id}

    return [s for s in collector.wait_for(complete, timeout=15) if s.trace_id == trace_id]


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    (span,) = [s for s in spans if s.service == service and s.name == name]
    return span


def db_system(span: ReceivedSpan) -> object:
    return span.attributes.get("db.system.name", span.attributes.get("db.system"))


def test_one_request_is_one_trace_across_every_service(
    traced: TracedStack, project_key: tuple[str, str], redis_url: str
) -> None:
    with openai.OpenAI(base_url=f"{traced.gateway.url}/v1", api_key=project_key[1],
                       max_retries=0) as client:  # fmt: skip
        missed = ask(client, "How do I reset my password?")
        assert missed["x-watchllm-cache"] == "miss"
        miss = event_of(redis_url, traced, missed)
        # The store span ends after the exact entry and the index are written.
        spans = trace_holding(traced.collector, miss.trace_id or "", {
            ("watchllm-gateway", REQUEST_SPAN), ("watchllm-gateway", "cache lookup"),
            ("watchllm-cache", "cache ask"), ("watchllm-cache", "cache store"),
            ("watchllm-limiter", "charge tokens"), ("watchllm-analytics", "analytics insert"),
        })  # fmt: skip
        hit_headers = ask(client, "how do I reset my password")
    assert hit_headers["x-watchllm-cache"] == "hit"

    # The gateway: HTTP server span → GenAI request span → lookup, upstream, Redis, Postgres.
    request = one(spans, "watchllm-gateway", REQUEST_SPAN)
    server = next(s for s in spans if s.span_id == request.parent_span_id)
    assert (server.service, server.kind) == ("watchllm-gateway", "SERVER")
    assert "/v1/chat/completions" in server.name
    assert request.kind == "CLIENT"
    attributes = request.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.request.model"] == attributes["gen_ai.response.model"] == MODEL
    assert attributes["gen_ai.usage.input_tokens"] == miss.prompt_tokens > 0
    assert attributes["gen_ai.usage.output_tokens"] == miss.completion_tokens > 0
    assert attributes["watchllm.cache"] == "miss"
    assert attributes["watchllm.request_id"] == missed["x-request-id"]
    assert attributes["watchllm.project_id"] == str(miss.project_id)
    children = [s for s in spans if s.parent_span_id == request.span_id]
    upstream = [s for s in children if s.kind == "CLIENT" and s.name.startswith("POST")]
    assert upstream, "the upstream call (aiohttp) is a child of the request span"
    (limit_ask,) = [s for s in children if s.name == "FCALL"]
    assert db_system(limit_ask) == "redis" and limit_ask.kind == "CLIENT"
    gateway_calls = {db_system(s) for s in spans if s.service == "watchllm-gateway"}
    assert {"redis", "postgresql"} <= gateway_calls

    # The cache service: its ask under the gateway's lookup, its store under the request.
    lookup = one(spans, "watchllm-gateway", "cache lookup")
    assert lookup.parent_span_id == request.span_id
    cache_ask = one(spans, "watchllm-cache", "cache ask")
    assert cache_ask.parent_span_id == lookup.span_id and cache_ask.kind == "CONSUMER"
    assert cache_ask.attributes["watchllm.cache.ask"] == "miss"
    store = one(spans, "watchllm-cache", "cache store")
    assert store.parent_span_id == request.span_id
    assert store.attributes["watchllm.cache.layer"] == "exact+semantic"
    assert any(s.parent_span_id == store.span_id and db_system(s) == "redis" for s in spans)

    # The limiter's charge and the analytics insert, from the event's traceparent.
    charge = one(spans, "watchllm-limiter", "charge tokens")
    assert charge.parent_span_id == request.span_id
    tokens = miss.prompt_tokens + miss.completion_tokens
    assert charge.attributes["watchllm.tokens_charged"] == tokens
    insert = one(spans, "watchllm-analytics", "analytics insert")
    assert insert.parent_span_id == request.span_id and not insert.error
    assert insert.attributes["db.system.name"] == "clickhouse"
    (batch_link,) = insert.links
    batch = traced.collector.wait_for(
        lambda all_spans: any(s.span_id == batch_link[1] for s in all_spans)
    )
    (batch_span,) = [s for s in batch if s.span_id == batch_link[1]]
    assert batch_span.name == "analytics insert batch" and batch_span.trace_id != miss.trace_id
    assert (miss.trace_id, request.span_id) in batch_span.links

    # The semantic hit: its own trace, with the cache service's answer in it.
    hit = event_of(redis_url, traced, hit_headers)
    assert hit.trace_id != miss.trace_id
    hit_spans = trace_holding(traced.collector, hit.trace_id or "", {
        ("watchllm-gateway", REQUEST_SPAN), ("watchllm-cache", "cache ask"),
        ("watchllm-limiter", "charge tokens"), ("watchllm-analytics", "analytics insert"),
    })  # fmt: skip
    hit_request = one(hit_spans, "watchllm-gateway", REQUEST_SPAN)
    assert hit_request.attributes["watchllm.cache"] == "hit"
    assert 0 < hit_request.attributes["watchllm.cache.similarity"] <= 1
    assert hit_request.attributes["gen_ai.usage.input_tokens"] == 0
    assert one(hit_spans, "watchllm-cache", "cache ask").attributes["watchllm.cache.ask"] == "hit"
    assert one(hit_spans, "watchllm-limiter", "charge tokens").attributes[
        "watchllm.tokens_charged"] == 0  # fmt: skip
    assert not any(s.name == "cache store" for s in hit_spans)  # a hit is not stored again
