"""Analytics settings: the only place the analytics service reads its environment.

Built once in ``__main__`` (or by a test) and passed down.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, SecretStr

from watchllm_shared.contracts import Stream
from watchllm_shared.contracts.request_bodies import REQUEST_BODIES_STREAM
from watchllm_shared.settings import WatchLLMSettings, required_secret

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class AnalyticsSettings(WatchLLMSettings):
    analytics_host: str = "127.0.0.1"
    analytics_port: int = 8092
    analytics_metrics_port: int = Field(
        default=9192, description="/metrics, on a listener of its own (not the API port)."
    )
    data_dir: Path = Field(
        default=Path(".watchllm"),
        description="Where the embedded ClickHouse (chdb) keeps its data, under clickhouse/.",
    )
    clickhouse_url: str | None = Field(
        default=None,
        description="A ClickHouse server (http://user:password@host:8123) or chdb:///abs/path."
        " Unset: chdb:///<data dir>/clickhouse, in this process.",
    )
    clickhouse_database: str = Field(default="watchllm", pattern=IDENTIFIER)
    events_stream: str = Field(default=Stream.REQUESTS_COMPLETED.value)
    analytics_consumer_group: str = "analytics"
    bodies_stream: str = Field(
        default=REQUEST_BODIES_STREAM,
        description="Logged request and answer bodies (group analytics-bodies).",
    )
    analytics_consumer_name: str = Field(
        default_factory=socket.gethostname,
        description="Stable across restarts, so a restarted consumer takes its own pending"
        " entries back at once; give each process on one host its own name.",
    )
    analytics_batch_max_rows: int = Field(default=25_000, gt=0, le=1_000_000)
    analytics_batch_max_seconds: float = Field(
        default=1.0,
        gt=0,
        description="A batch is inserted at the latest this long after its first event was read;"
        " under light traffic every batch waits this long (each insert has a fixed cost of"
        " ~35 ms of CPU with embedded chdb: at 1 s, ~4 % of a core at 50 events/s).",
    )
    analytics_read_count: int = Field(default=2_000, gt=0, description="Entries per XREADGROUP.")
    analytics_reclaim_idle_ms: int = Field(
        default=30_000, gt=0, description="Entries pending this long elsewhere are taken over."
    )
    analytics_max_deliveries: int = Field(
        default=5, ge=2, description="An entry delivered more often goes to the dead-letter stream."
    )
    analytics_retention_days: int = Field(default=365, ge=1, le=36_500)
    analytics_query_token: SecretStr | None = Field(
        default=None,
        description="Required to serve: /v1/queries needs 'Authorization: Bearer <it>'"
        " (at least 32 characters). The answers hold every project's usage, keys and cache"
        " keys; the service refuses to start without it.",
    )
    analytics_query_timeout_seconds: float = Field(default=10.0, gt=0)
    analytics_monitor_seconds: float = Field(
        default=2.0, gt=0, description="Lag, dead-letter size and heartbeat refresh interval."
    )
    analytics_shutdown_seconds: float = Field(
        default=15.0, gt=0, description="Longest SIGTERM drain; what is left stays pending."
    )

    def query_token(self) -> str:
        """The read-query API's bearer token; ``MissingSecret`` when unset or short."""
        return required_secret(self.analytics_query_token, "WATCHLLM_ANALYTICS_QUERY_TOKEN",
                               "the bearer token of the read-query API")  # fmt: skip

    def clickhouse_dsn(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def embedded(self) -> bool:
        return self.clickhouse_dsn().startswith("chdb:")
