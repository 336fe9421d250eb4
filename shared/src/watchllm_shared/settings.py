"""The settings base every WatchLLM service extends.

Settings are read from the environment once, in each service's entrypoint, and passed
down; nothing else in the code base reads ``os.environ``. ``REDIS_URL`` and
``DATABASE_URL`` are unprefixed because operators expect those names; everything else
is ``WATCHLLM_*``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


# One config for every settings class, so that combining them keeps the prefix.
_CONFIG = SettingsConfigDict(
    env_prefix="WATCHLLM_",
    env_ignore_empty=True,
    extra="ignore",
    frozen=True,
)


class WatchLLMSettings(BaseSettings):
    """Settings common to every service."""

    model_config = _CONFIG

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "WATCHLLM_REDIS_URL"),
    )
    log_level: LogLevel = "INFO"
    log_bodies: bool = Field(
        default=False,
        description="Log request and response bodies. Off by default: bodies hold user data.",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_ENDPOINT", "WATCHLLM_OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        description="Turns tracing on: spans are exported over OTLP/HTTP to this URL.",
    )


class DatabaseSettings(BaseSettings):
    """Mixin for services that read Postgres (gateway, limiter, dashboard, CLI)."""

    model_config = _CONFIG

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/watchllm",
        validation_alias=AliasChoices("DATABASE_URL", "WATCHLLM_DATABASE_URL"),
    )
