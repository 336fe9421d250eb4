"""The gateway's Prometheus metrics, on a registry owned by one app instance.

Names from DESIGN.md: ``watchllm_requests_total{status}``, ``watchllm_cache_hits_total``,
``watchllm_cache_misses_total``, ``watchllm_latency_seconds``; the rest explain the
gateway's own moving parts (upstream, events, key cache).

No label takes a string a caller chose (issue 22, finding 5): each series costs memory
and every scrape, so a key holder sending many or long names must not grow /metrics.
Labels are the gateway's own words (endpoint paths, outcomes, provider kinds, exception
class names), HTTP statuses, or model names through ``ModelLabel``: a model the operator
configured (priced, listed in a route's ``models``, or a route's literal pattern) keeps
its name, any other is ``other``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from watchllm_gateway.events import PublisherMetrics

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
)  # fmt: skip


OTHER_MODEL = "other"


class ModelLabel:
    """The ``model`` label for a model name: itself when configured, else ``other``."""

    def __init__(self, configured: Iterable[str]) -> None:
        self._configured = frozenset(configured)

    def __call__(self, model: str) -> str:
        return model if model in self._configured else OTHER_MODEL


class GatewayMetrics:
    def __init__(self) -> None:
        self._bound: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "watchllm_requests", "Requests answered, by endpoint and HTTP status.",
            ["endpoint", "status"], registry=r,
        )  # fmt: skip
        self.cache_hits = Counter(
            "watchllm_cache_hits", "Answers served from cache, by layer.", ["layer"], registry=r
        )
        self.cache_ask = Histogram(
            "watchllm_cache_ask_seconds", "Cache lookup (exact GET, then semantic ask).",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.cache_unavailable = Counter(
            "watchllm_cache_unavailable", "Lookups turned into misses by a timeout or error.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.cache_stores = PublisherMetrics(
            Counter("watchllm_cache_stores_published", "Answers sent to be cached.", registry=r),
            Counter("watchllm_cache_stores_dropped",
                    "Answers not cached: buffer full, or Redis unreachable at shutdown.",
                    registry=r),
            Gauge("watchllm_cache_stores_buffered", "Answers waiting to be sent.", registry=r),
            Counter("watchllm_cache_store_publish_errors", "Failed store writes.", registry=r),
        )  # fmt: skip
        self.request_bodies = PublisherMetrics(
            Counter("watchllm_request_bodies_published", "Logged bodies written.", registry=r),
            Counter("watchllm_request_bodies_dropped",
                    "Logged bodies lost: buffer full, or Redis unreachable at shutdown.",
                    registry=r),
            Gauge("watchllm_request_bodies_buffered", "Logged bodies waiting.", registry=r),
            Counter("watchllm_request_bodies_publish_errors", "Failed body writes.", registry=r),
        )  # fmt: skip
        self.cache_semantic_skipped = Counter(
            "watchllm_cache_semantic_skipped",
            "Requests of semantic projects that skipped the semantic layer, by reason "
            "(question-too-long: over contracts.cache.MAX_SEMANTIC_QUESTION_CHARS).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.cache_misses = Counter(
            "watchllm_cache_misses", "Cache lookups that found nothing.", registry=r
        )
        self.latency = Histogram(
            "watchllm_latency_seconds", "Request received to last byte sent.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttfb = Histogram(
            "watchllm_ttfb_seconds", "Request received to first byte sent.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_latency = Histogram(
            "watchllm_upstream_latency_seconds", "Upstream request to response headers.",
            ["provider"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_retries = Counter(
            "watchllm_upstream_retries", "Upstream attempts retried, by reason.",
            ["provider", "reason"], registry=r,
        )  # fmt: skip
        self.events_published = Counter(
            "watchllm_events_published", "Request-completed events written to Redis.", registry=r
        )
        self.events_dropped = Counter(
            "watchllm_events_dropped",
            "Events never written: the in-process buffer was full (Redis down too long), or"
            " Redis was still unreachable when the gateway shut down.",
            registry=r,
        )
        self.events_buffered = Gauge(
            "watchllm_events_buffered", "Events waiting to be written to Redis.", registry=r
        )
        self.event_publish_errors = Counter(
            "watchllm_event_publish_errors", "Failed attempts to write events to Redis.", registry=r
        )
        self.events = PublisherMetrics(
            self.events_published, self.events_dropped, self.events_buffered,
            self.event_publish_errors,
        )  # fmt: skip
        self.key_lookups = Counter(
            "watchllm_key_lookups", "API key lookups, by where the answer came from.",
            ["source"], registry=r,
        )  # fmt: skip
        self.limiter_ask = Histogram(
            "watchllm_limiter_ask_seconds", "One FCALL to the limiter library, round trip.",
            buckets=(0.0001, 0.0002, 0.0003, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05),
            registry=r,
        )  # fmt: skip
        self.limiter_decisions = Counter(
            "watchllm_limiter_decisions", "Rate-limit decisions.", ["decision"], registry=r
        )
        self.concurrency_refused = Counter(
            "watchllm_concurrency_refused",
            "Requests refused for requests in flight: 'replica' by a project's share of this"
            " replica's upstream pool, 'limit' by a project's or key's concurrency limit.",
            ["scope"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "watchllm_requests_in_flight", "Requests admitted and not yet ended, this replica.",
            registry=r,
        )  # fmt: skip
        self.limiter_unavailable = Counter(
            "watchllm_limiter_unavailable",
            "Requests decided by the failure policy because the limiter did not answer.",
            ["policy"], registry=r,
        )  # fmt: skip
        self.unpriced = Counter(
            "watchllm_unpriced_requests",
            "Requests for models missing from the price table; models the operator did not"
            " configure are counted as model=\"other\".",
            ["model"], registry=r,
        )  # fmt: skip

    def observe_request(
        self, endpoint: str, status: int, latency: float, ttfb: float | None
    ) -> None:
        """One finished request; labelled children are bound once (``labels`` is slow)."""
        bound = self._bound.get((endpoint, status))
        if bound is None:
            bound = (
                self.requests.labels(endpoint, str(status)),
                self.latency.labels(endpoint),
                self.ttfb.labels(endpoint),
            )
            self._bound[(endpoint, status)] = bound
        requests, latency_histogram, ttfb_histogram = bound
        requests.inc()
        latency_histogram.observe(latency)
        if ttfb is not None:
            ttfb_histogram.observe(ttfb)
