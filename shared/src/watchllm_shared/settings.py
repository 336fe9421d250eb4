"""The settings base every WatchLLM service extends.

Settings are read from the environment once, in each service's entrypoint, and passed
down; nothing else in the code base reads ``os.environ``. ``REDIS_URL`` and
``DATABASE_URL`` are unprefixed because operators expect those names; everything else
is ``WATCHLLM_*``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# Secrets a service needs to start (a token, a key): at least this long, so that a
# placeholder ("changeme", "secret") is refused along with a missing one.
MIN_SECRET_CHARS = 32


class MissingSecret(ValueError):
    """A secret a service needs is unset or too short; ``str()`` names the variable and
    says how to make one."""


def required_secret(value: SecretStr | None, variable: str, purpose: str) -> str:
    """The secret's value; ``MissingSecret`` when it is unset or shorter than
    ``MIN_SECRET_CHARS``. ``purpose``: what it protects, for the message."""
    secret = value.get_secret_value() if value is not None else ""
    if len(secret) >= MIN_SECRET_CHARS:
        return secret
    state = "is not set" if not secret else f"has {len(secret)} characters"
    raise MissingSecret(
        f"{variable} {state}: it must be at least {MIN_SECRET_CHARS} characters ({purpose})."
        " Generate one with `openssl rand -hex 32`; `watchllm up` generates its own."
    )


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
    # Tracing: these only decide whether it is on (see ``tracing_enabled``); the
    # OpenTelemetry SDK reads every OTEL_* variable itself (endpoints, headers, sampler,
    # resource attributes, batch processor), as its documentation says.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="Turns tracing on: spans are exported over OTLP/HTTP to <URL>/v1/traces.",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="Turns tracing on: spans are exported over OTLP/HTTP to this exact URL.",
    )
    otel_sdk_disabled: bool = Field(
        default=False,
        validation_alias="OTEL_SDK_DISABLED",
        description="true keeps tracing off even with an endpoint set.",
    )

    @property
    def tracing_enabled(self) -> bool:
        endpoint = self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint
        return bool(endpoint) and not self.otel_sdk_disabled


class DatabaseSettings(BaseSettings):
    """Mixin for services that read Postgres (gateway, limiter, dashboard, CLI)."""

    model_config = _CONFIG

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/watchllm",
        validation_alias=AliasChoices("DATABASE_URL", "WATCHLLM_DATABASE_URL"),
    )
