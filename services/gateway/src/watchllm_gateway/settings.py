"""Gateway settings: the only place the gateway reads its environment.

Built once in ``__main__`` (or by a test) and passed to ``create_app``.
"""

from __future__ import annotations

import os
import socket
import uuid
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import NoDecode

from watchllm_shared.contracts import Stream
from watchllm_shared.contracts.model_patterns import PRICED
from watchllm_shared.settings import DatabaseSettings, WatchLLMSettings, required_secret

# Shares of ``gateway_shutdown_seconds``. Flushing with Redis up takes milliseconds (the
# publishers write all along); the 2 s are for a slow Redis. Closing the clients and the
# process after the flush takes ~0.1 s, and uvicorn ~0.2 s before the requests' wait.
_FLUSH_SECONDS = 2.0
_CLOSE_SECONDS = 0.5


class ProviderKind(StrEnum):
    """The kind of an upstream; each gateway endpoint speaks the shape of one of the first
    two. Azure OpenAI speaks OpenAI's shape at its own paths (``routing.table``)."""

    OPENAI = "openai"  # OpenAI or any OpenAI-compatible base URL
    ANTHROPIC = "anthropic"
    AZURE = "azure"


class RouteConfig(BaseModel):
    """A route of the original ``WATCHLLM_ROUTES`` shape: models matching ``pattern``
    (fnmatch) go to ``base_url`` with the key in ``api_key_env``. Still accepted; the
    routes file (``routing.schema``) says the same with several deployments per model.
    """

    model_config = ConfigDict(frozen=True)

    pattern: str
    provider: ProviderKind
    base_url: str
    api_key_env: str | None = None
    models: tuple[str, ...] = ()


class ModelPrice(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(frozen=True)

    input_per_million: Decimal
    output_per_million: Decimal


class GatewaySettings(WatchLLMSettings, DatabaseSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_metrics_port: int = Field(
        default=9180, description="/metrics, on a listener of its own (not the API port)."
    )
    routes: Annotated[Any, NoDecode] = Field(
        default=None,
        description='The routes document as JSON ({"models": [...]} or its list), or a'
        " list of routes of the original shape; see routing.schema. Default: claude-*"
        " to Anthropic, everything else to OpenAI.",
    )
    routes_file: Path | None = Field(
        default=None,
        description="A YAML routes file (routing.schema); instead of WATCHLLM_ROUTES.",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="JSON object overriding or extending the built-in price table,"
        ' e.g. {"my-model": {"input_per_million": "1.5", "output_per_million": "2"}}.',
    )
    price_table_path: Path | None = Field(
        default=None, description="A JSON file with the same shape as WATCHLLM_PRICES."
    )
    default_allowed_models: tuple[str, ...] = Field(
        default=(PRICED,),
        description="JSON list: the models a project without allowed models of its own may"
        ' use, as fnmatch patterns and "@priced" (every model with a price). ["*"]: every'
        " model, as before this setting (gateway/model_access.py).",
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # What a caller can make the gateway hold (``intake``, ``http_protocol``).
    max_body_bytes_in_flight: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Bytes of request bodies being read at once, per process; one project"
        " may hold a quarter of it. Past it: 503 server_busy with retry-after.",
    )
    body_read_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A request body must arrive within this; else 408."
    )
    max_header_bytes: int = Field(
        default=32 * 1024, ge=4096, description="Request line and headers; larger: 431."
    )
    header_read_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A request head must arrive within this; else 408."
    )
    gateway_max_connections: int = Field(
        default=2048,
        gt=0,
        description="Open connections per process; one past it is closed before it is read.",
    )
    upstream_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    upstream_read_timeout_seconds: float = Field(
        default=120.0, gt=0, description="Longest wait for the next upstream byte."
    )
    upstream_max_retries: int = Field(
        default=2, ge=0, le=10,
        description="Attempts after the first, across a model's deployments and its"
        " fallbacks (routing.dispatch).",
    )  # fmt: skip
    upstream_retry_backoff_seconds: float = Field(default=0.2, ge=0)
    upstream_retry_deadline_seconds: float = Field(
        default=30.0, gt=0,
        description="No new attempt starts this long after a request's first one began.",
    )  # fmt: skip
    upstream_cooldown_seconds: float = Field(
        default=1.0, gt=0,
        description="A failed deployment's first cooldown; doubled per failure in a row.",
    )  # fmt: skip
    upstream_cooldown_max_seconds: float = Field(
        default=60.0, gt=0,
        description="Longest cooldown, a 429's retry-after included (routing.cooldown).",
    )  # fmt: skip
    upstream_max_connections: int = Field(default=512, gt=0)
    key_cache_ttl_seconds: float = Field(
        default=0.5,
        gt=0,
        description="How long a key lookup is reused; a revocation reaches every replica"
        " within this time.",
    )
    key_cache_stale_seconds: float = Field(
        default=300.0,
        ge=0,
        description="While Postgres is unreachable, keep serving keys seen this recently.",
    )
    key_lookup_timeout_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Deadline of one key lookup in Postgres; past it, the lookup counts as"
        " an outage (stale answer or 503).",
    )
    event_buffer_size: int = Field(default=100_000, gt=0)
    gateway_shutdown_seconds: float = Field(
        default=6.0,
        ge=1.5,
        description="Longest the gateway takes to stop after SIGTERM; a supervisor's grace"
        " before SIGKILL must be longer (watchllm up and Docker give 10 s). Requests in"
        " flight get all of it but the flush share and 0.5 s to close; then the events and"
        " cache stores still in memory are written, all at once, in the flush share (2 s;"
        " a third when shorter than 6 s). What is unwritten then is logged with its count"
        " and counted in watchllm_events_dropped_total / watchllm_cache_stores_dropped_total.",
    )
    events_stream: str = Field(
        default=Stream.REQUESTS_COMPLETED.value,
        description="Stream for request-completed events; change it only to share one"
        " Redis between separate WatchLLM deployments.",
    )
    health_check_timeout_seconds: float = Field(default=1.0, gt=0)
    cache_enabled: bool = Field(
        default=True, description="Consult and fill the cache (project settings still apply)."
    )
    cache_timeout_seconds: float = Field(
        default=0.15, gt=0, description="Deadline of one cache lookup; then it is a miss."
    )
    cache_key_secret: SecretStr | None = Field(
        default=None,
        description="Required with the cache on (32+ characters, the same in every gateway):"
        " exact-cache keys are HMACs keyed with it, so a key seen in the request log or on"
        " the dashboard cannot be matched to a guessed question. Changing it turns every"
        " exact entry into a miss.",
    )
    instance_name: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        description="This replica's name (its cache reply channel).",
    )
    state_report_seconds: float = Field(
        default=5.0, gt=0,
        description="How often this replica publishes what it sees of the cache, the limiter"
        " and Redis (timeouts, breaker, fail-opens, buffered events) for the Health page.",
    )  # fmt: skip
    limiter_enabled: bool = Field(default=True, description="Ask the limiter on every request.")
    limiter_timeout_seconds: float = Field(
        default=0.5, gt=0, description="Deadline of one limiter ask; then the policy applies."
    )
    limiter_failure_policy: Literal["open", "closed"] = Field(
        default="open",
        description="When the limiter cannot answer: 'open' serves the request, 'closed'"
        " answers 503.",
    )
    limiter_write_refused_policy: Literal["open", "closed"] = Field(
        default="closed",
        description="When Redis answers the limiter but refuses to write (OOM at maxmemory,"
        " MISCONF): 'closed' answers 503, 'open' serves the request unlimited.",
    )
    # Requests in flight per project (``concurrency``; issue 22, finding 7).
    project_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Requests in flight at once, across every replica, for a project without"
        " a concurrency limit of its own (watchllm projects limits --concurrency); unset:"
        " one replica's project share of the upstream pool.",
    )
    upstream_project_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="The share of this replica's upstream connections (requests in flight)"
        " one project may hold; past it: 429 concurrency_limit_exceeded.",
    )
    concurrency_lease_seconds: float = Field(
        default=30.0,
        ge=1.0,
        description="A request's concurrency slot lapses this long after its replica last"
        " renewed it: a replica killed without a word frees its slots within this time.",
    )

    def project_share(self) -> int:
        """Requests in flight one project may have on this replica (``concurrency``)."""
        return max(1, int(self.upstream_max_connections * self.upstream_project_share))

    def default_project_concurrency(self) -> int:
        return self.project_concurrency or self.project_share()

    @model_validator(mode="after")
    def _a_whole_body_fits_a_project_share(self) -> GatewaySettings:
        share = self.max_body_bytes_in_flight // 4  # ``intake``'s per-project share
        if share < self.max_body_bytes:
            raise ValueError(
                f"WATCHLLM_MAX_BODY_BYTES_IN_FLIGHT ({self.max_body_bytes_in_flight}) must be"
                f" at least 4 x WATCHLLM_MAX_BODY_BYTES ({self.max_body_bytes}): one project"
                " may hold a quarter of it, and a body of the largest size must fit"
            )
        return self

    def cache_key(self) -> bytes:
        """The exact-cache key secret; ``MissingSecret`` when unset or short."""
        return required_secret(self.cache_key_secret, "WATCHLLM_CACHE_KEY_SECRET",
                               "the exact cache's key secret").encode()  # fmt: skip

    def shutdown_split(self) -> tuple[float, float]:
        """(seconds for requests in flight to finish, seconds to flush what they
        published) after SIGTERM; with ``_CLOSE_SECONDS`` they make
        ``gateway_shutdown_seconds``."""
        total = self.gateway_shutdown_seconds
        flush = min(_FLUSH_SECONDS, total / 3)
        return total - flush - _CLOSE_SECONDS, flush


def secret_from_env(name: str | None) -> SecretStr | None:
    """The provider key in the environment variable a route names (``routing``)."""
    value = os.environ.get(name) if name else None
    return SecretStr(value) if value else None
