"""The request-completed event, version 1.

Rules (rolling deploys mix old and new producers and consumers):
- add-only: a new field is optional with a default; no field is removed or renamed;
- consumers ignore fields they do not know (``extra="ignore"``);
- a breaking change is a new ``schema_version`` on a new stream name.

On the wire the event is one stream entry with a field ``data`` holding the JSON
document; ``to_stream_fields``/``from_stream_fields`` are the only codec. When the
gateway traces, the entry also carries the request's W3C trace context in
``traceparent`` (and ``tracestate``) next to ``data``: optional, see ``trace_context``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class RequestStatus(StrEnum):
    OK = "ok"
    CLIENT_ERROR = "client_error"  # 4xx decided by the gateway or returned by upstream
    RATE_LIMITED = "rate_limited"
    UPSTREAM_ERROR = "upstream_error"  # upstream 5xx or unreachable after retries
    UPSTREAM_TIMEOUT = "upstream_timeout"
    CLIENT_DISCONNECTED = "client_disconnected"  # the caller went away mid-stream
    GATEWAY_ERROR = "gateway_error"  # a store the gateway needs (e.g. Postgres) was down


class CacheOutcome(StrEnum):
    HIT = "hit"
    MISS = "miss"
    BYPASS = "bypass"


class RequestCompleted(BaseModel):
    """One per request the gateway answered (success or error)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    event_id: UUID
    occurred_at: datetime = Field(description="When the gateway finished the response (UTC).")
    request_id: str
    project_id: UUID | None = None  # None when the request failed authentication
    key_id: UUID | None = None
    model: str | None = None
    provider: str | None = None
    endpoint: str
    http_status: int
    status: RequestStatus
    error_type: str | None = None
    cache: CacheOutcome = CacheOutcome.BYPASS
    cache_similarity: float | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cost_saved_usd: Decimal = Decimal(0)
    latency_ms: float = Field(description="Request received to last byte sent.")
    upstream_latency_ms: float | None = None
    ttfb_ms: float | None = Field(default=None, description="Request received to first byte.")
    trace_id: str | None = None
    upstream_attempts: int = 0
    cache_key: str | None = Field(
        default=None,
        description="On a cache hit, the exact-layer key of the entry that answered "
        "(for a semantic hit, the stored question's entry): what ranks cached prompts.",
    )
    unpriced: bool | None = Field(
        default=None,
        description="True: the model has no price in the gateway's table, so cost_usd is 0"
        " though tokens were used (watchllm_unpriced_requests_total counts these too);"
        " False: priced; None: nothing was priced (no answer, a cache hit) or the producer"
        " predates the field.",
    )

    deployment: str | None = Field(
        default=None,
        description="The routes file's name of the deployment that answered (its"
        " 'name', or '<model entry>[<index>]'); None when no deployment answered.",
    )
    fallback_model: str | None = Field(
        default=None,
        description="The fallback model that answered, when the requested model's"
        " deployments all failed; None when the requested model answered.",
    )

    properties: dict[str, str] = Field(
        default_factory=dict,
        description="The caller's custom properties (x-watchllm-property-<name>: <value>"
        " headers), name to value; names are lower case. Empty when none were given or"
        " the producer predates the field.",
    )
    end_user: str | None = Field(
        default=None,
        description="Who the request was made for, as the caller named them: the"
        " x-watchllm-user header, else OpenAI's 'user' or Anthropic's"
        " 'metadata.user_id' body field; None when none was given or the producer"
        " predates the field.",
    )

    def to_stream_fields(self) -> dict[str, bytes]:
        return {"data": self.model_dump_json().encode()}

    @classmethod
    def from_stream_fields(cls, fields: dict[bytes, bytes]) -> RequestCompleted:
        return cls.model_validate_json(fields[b"data"])
