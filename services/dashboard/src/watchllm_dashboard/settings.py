"""Dashboard settings: the only place the dashboard reads its environment.

Built once per process (``python -m watchllm_dashboard`` checks them before starting
Streamlit; the app builds its runtime from them once, see ``runtime``) and passed down.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, field_validator

from watchllm_shared.accounts import SessionPolicy
from watchllm_shared.contracts.request_log_queries import MAX_EXPORT_PAGE
from watchllm_shared.settings import DatabaseSettings, WatchLLMSettings

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class DashboardSettings(WatchLLMSettings, DatabaseSettings):
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 3000
    gateway_url: str = Field(
        default="http://127.0.0.1:8080", description="The gateway, for the Health page."
    )
    analytics_url: str = Field(
        default="http://127.0.0.1:8092",
        description="The analytics service: its read-query API serves the dashboard's"
        " ClickHouse reads unless dashboard_clickhouse_url is set.",
    )
    analytics_query_token: SecretStr | None = Field(
        default=None, description="Bearer token of the analytics read-query API, when it has one."
    )
    dashboard_clickhouse_url: str | None = Field(
        default=None,
        description="A ClickHouse server as a read-only user (http://dashboard:…@host:8123):"
        " the dashboard then runs the queries itself. Unset: through the analytics service"
        " (the only way in embedded mode, where chdb admits one process).",
    )
    clickhouse_database: str = Field(default="watchllm", pattern=IDENTIFIER)
    dashboard_query_timeout_seconds: float = Field(default=10.0, gt=0)
    dashboard_cache_seconds: float = Field(
        default=15.0, ge=0, description="How long a chart's analytics result is reused."
    )
    dashboard_session_idle_minutes: int = Field(default=30, ge=1)
    dashboard_session_lifetime_hours: int = Field(default=12, ge=1)
    dashboard_admin_username: str | None = Field(
        default=None,
        description="Bootstrap: with dashboard_admin_password, creates this admin at start"
        " while no dashboard user exists (never changes an existing user).",
    )
    dashboard_admin_password: SecretStr | None = None
    dashboard_trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        description="How many proxies in front of the dashboard append to X-Forwarded-For:"
        " sign-in throttling counts failures per client address, the one the outermost"
        " trusted proxy saw. 0: the connection's own address (nothing in between).",
    )

    dashboard_export_secret: SecretStr | None = Field(
        default=None,
        description="Signs the Requests page's export links (HMAC). Unset: a secret made"
        " at start, so a link works on the process that made it (one replica, or"
        " replicas behind client affinity); set the same one on every replica otherwise.",
    )
    dashboard_export_page_rows: int = Field(
        default=5_000,
        ge=1,
        le=MAX_EXPORT_PAGE,
        description="Rows an export reads from analytics at a time: what it holds at once.",
    )

    @field_validator("dashboard_clickhouse_url")
    @classmethod
    def _server_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                "must be a ClickHouse server URL (http:// or https://); with embedded chdb"
                " leave it unset: the dashboard reads through the analytics service"
            )
        return value

    @field_validator("dashboard_export_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (or unset: one made at start)")
        return value

    @property
    def session_policy(self) -> SessionPolicy:
        return SessionPolicy(
            idle=timedelta(minutes=self.dashboard_session_idle_minutes),
            lifetime=timedelta(hours=self.dashboard_session_lifetime_hours),
        )
