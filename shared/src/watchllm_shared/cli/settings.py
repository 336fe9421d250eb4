"""Settings of the ``watchllm`` command.

``DATABASE_URL``/``REDIS_URL`` win; when they are unset and a ``watchllm up`` runs from
this folder (its data folder holds ``runtime.json``), the CLI talks to that stack, so
``watchllm keys create`` works in a second terminal with nothing to export.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import AliasChoices, Field, SecretStr

from watchllm_shared.settings import DatabaseSettings, WatchLLMSettings

RUNTIME_FILE = "runtime.json"


class CliSettings(WatchLLMSettings, DatabaseSettings):
    data_dir: Path = Field(
        default=Path(".watchllm"),
        description="Where `watchllm up` keeps embedded Redis and Postgres data and logs.",
    )
    gateway_port: int = 8080
    limiter_port: int = 8090
    cache_port: int = 8091
    analytics_port: int = 8092
    # Each service's /metrics listener (apart from its API port); `watchllm check`
    # reads the gateway's.
    gateway_metrics_port: int = 9180
    limiter_metrics_port: int = 9190
    cache_metrics_port: int = 9191
    analytics_metrics_port: int = 9192
    fake_provider_port: int = 9000
    dashboard_port: int = 3000
    # `watchllm up`'s supervisor (cli/restart_policy.py, cli/supervisor.py).
    up_restart_backoff_seconds: float = Field(default=0.5, gt=0)
    up_restart_max_backoff_seconds: float = Field(default=30.0, gt=0)
    up_restart_limit: int = Field(
        default=5, ge=1, description="Exits within the window after which a process is left down."
    )
    up_restart_window_seconds: float = Field(default=300.0, gt=0)
    # Above every service's own stop bound (gateway 6 s, WATCHLLM_GATEWAY_SHUTDOWN_SECONDS;
    # analytics 15 s, WATCHLLM_ANALYTICS_SHUTDOWN_SECONDS): a cap, not a wait.
    up_stop_grace_seconds: float = Field(
        default=20.0, gt=0, description="Each stop tier's wait before SIGKILL."
    )
    # The embedded Valkey's cap (`up` without REDIS_URL): the variable compose reads too.
    redis_maxmemory: str = Field(
        default="1gb",
        validation_alias=AliasChoices("REDIS_MAXMEMORY", "WATCHLLM_REDIS_MAXMEMORY"),
        description="The embedded Valkey's maxmemory (noeviction: full, it refuses writes"
        " and evicts no limiter counter).",
    )
    clickhouse_url: str | None = Field(
        default=None, description="A ClickHouse server lets `up` run several analytics replicas."
    )
    qdrant_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("QDRANT_URL", "WATCHLLM_QDRANT_URL"),
        description="A Qdrant server gives several cache replicas one shared index.",
    )
    analytics_query_token: SecretStr | None = Field(
        default=None,
        description="`up` hands it to analytics and the dashboard (unset: one it generates"
        " once under the data folder, cli/local_secrets.py); check/loadtest send it.",
    )
    cache_key_secret: SecretStr | None = Field(
        default=None,
        description="`up` hands it to the gateways (unset: one it generates once under the"
        " data folder, so restarts keep their cache hits).",
    )

    def explicit(self, field: str) -> bool:
        return field in self.model_fields_set

    def runtime_urls(self) -> dict[str, str]:
        """URLs a running `watchllm up` wrote into the data folder, if any."""
        path = self.data_dir / RUNTIME_FILE
        try:
            data = orjson.loads(path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def effective_database_url(self) -> str:
        if self.explicit("database_url"):
            return self.database_url
        return self.runtime_urls().get("database_url", self.database_url)

    def analytics_token(self) -> str | None:
        """The analytics query token to send: the environment's, else the one a
        ``watchllm up`` keeps in this data folder (None when there is neither)."""
        from watchllm_shared.cli.local_secrets import ANALYTICS_QUERY_TOKEN, read_secret

        if self.analytics_query_token is not None:
            return self.analytics_query_token.get_secret_value()
        return read_secret(self.data_dir, ANALYTICS_QUERY_TOKEN)

    def effective_redis_url(self) -> str:
        if self.explicit("redis_url"):
            return self.redis_url
        return self.runtime_urls().get("redis_url", self.redis_url)
