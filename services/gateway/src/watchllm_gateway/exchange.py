"""One caller request from arrival to the last byte, and the event it becomes.

The exchange collects what the analytics event needs as the request moves through
the gateway (key, model, route, usage, timings, outcome); ``to_event`` turns it into
the ``RequestCompleted`` contract exactly once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from watchllm_gateway.body_log import BodyCapture
from watchllm_gateway.endpoints import EndpointSpec

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from watchllm_gateway.attribution import Attribution
    from watchllm_gateway.cache_flow import CachePlan
    from watchllm_gateway.cache_shapes import StreamAssembler
    from watchllm_gateway.routing import Dispatched
    from watchllm_gateway.upstream import UpstreamResponse
from watchllm_gateway.usage import Usage
from watchllm_shared.accounts import KeyGrant
from watchllm_shared.contracts import CacheOutcome, RequestCompleted, RequestStatus
from watchllm_shared.contracts.cache import CacheStore
from watchllm_shared.telemetry import current_trace_id


@dataclass(slots=True)
class Exchange:
    spec: EndpointSpec
    request_id: str = field(default_factory=lambda: f"req_{uuid.uuid4().hex}")
    started: float = field(default_factory=time.perf_counter)
    grant: KeyGrant | None = None
    model: str | None = None
    provider: str | None = None
    stream: bool = False
    http_status: int = 200
    status: RequestStatus = RequestStatus.OK
    error_type: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    unpriced: bool | None = None  # True: no price for the model (cost_usd stays 0)
    upstream_latency: float | None = None
    upstream_attempts: int = 0
    deployment: str | None = None  # the deployment that answered (``routing``)
    fallback_model: str | None = None  # the fallback model that answered, if one did
    upstream_model: str | None = None  # the model name the answering deployment got
    dispatched: Dispatched | None = None  # its tokens are charged to its deployment's tpm
    ttfb: float | None = None
    trace_id: str | None = field(default_factory=current_trace_id)
    limit_headers: dict[str, str] = field(default_factory=dict)
    cache: CacheOutcome = CacheOutcome.BYPASS
    cache_similarity: float | None = None
    cache_key: str | None = None  # the entry that answered a hit
    cost_saved_usd: Decimal = Decimal(0)
    store: CacheStore | None = None  # published after the answer was sent
    cache_plan: CachePlan | None = None
    assembler: StreamAssembler | None = None
    span: Span | None = None  # the request's span, only when tracing is on (``tracing``)
    response_model: str | None = None  # filled only for the span
    properties: dict[str, str] = field(default_factory=dict)  # the caller's (``attribution``)
    end_user: str | None = None
    bodies: BodyCapture | None = None  # only for projects that log bodies (``body_log``)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def mark_first_byte(self) -> None:
        if self.ttfb is None:
            self.ttfb = self.elapsed()

    def answered_by(self, dispatched: Dispatched, answer: UpstreamResponse) -> UpstreamResponse:
        """``answer``: the dispatched one as the caller reads it (``translation``)."""
        self.upstream_attempts = answer.attempts
        self.upstream_latency = answer.latency_seconds
        self.deployment = dispatched.deployment.name
        self.provider = dispatched.deployment.provider.value
        self.fallback_model = dispatched.model if dispatched.fallback else None
        self.upstream_model = dispatched.upstream_model
        self.dispatched = dispatched
        return answer

    def attribute(self, attribution: Attribution, body: dict[str, Any], raw: bytes) -> None:
        """The caller's properties and end user (``attribution``), for the event; the
        raw body too when the project logs bodies (``body_log``)."""
        self.properties = attribution.properties
        self.end_user = attribution.end_user(self.spec.api, body)
        if self.grant is not None and self.grant.bodies.enabled:
            self.bodies = BodyCapture(self.grant.bodies, raw)

    def fail(self, http_status: int, status: RequestStatus, error_type: str) -> None:
        self.http_status = http_status
        self.status = status
        self.error_type = error_type

    def to_event(self, latency: float) -> RequestCompleted:
        return RequestCompleted(
            event_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            request_id=self.request_id,
            project_id=self.grant.project_id if self.grant else None,
            key_id=self.grant.key_id if self.grant else None,
            model=self.model,
            provider=self.provider,
            endpoint=self.spec.path,
            http_status=self.http_status,
            status=self.status,
            error_type=self.error_type,
            cache=self.cache,
            cache_similarity=self.cache_similarity,
            cost_saved_usd=self.cost_saved_usd,
            stream=self.stream,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            cost_usd=self.cost_usd,
            latency_ms=latency * 1000,
            upstream_latency_ms=(
                self.upstream_latency * 1000 if self.upstream_latency is not None else None
            ),
            ttfb_ms=self.ttfb * 1000 if self.ttfb is not None else None,
            trace_id=self.trace_id,
            upstream_attempts=self.upstream_attempts,
            deployment=self.deployment,
            fallback_model=self.fallback_model,
            cache_key=self.cache_key,
            unpriced=self.unpriced,
            properties=self.properties,
            end_user=self.end_user,
        )


def status_for_http(http_status: int) -> RequestStatus:
    if http_status < 400:
        return RequestStatus.OK
    if http_status == 429:
        return RequestStatus.RATE_LIMITED
    if http_status == 499:  # hung up before the answer (e.g. mid-body, ``intake``)
        return RequestStatus.CLIENT_DISCONNECTED
    if http_status == 503:
        return RequestStatus.GATEWAY_ERROR
    if http_status == 504:
        return RequestStatus.UPSTREAM_TIMEOUT
    if http_status >= 500:
        return RequestStatus.UPSTREAM_ERROR
    return RequestStatus.CLIENT_ERROR
