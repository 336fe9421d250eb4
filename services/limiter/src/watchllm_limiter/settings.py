"""Limiter settings: read once in ``__main__`` and passed down."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from watchllm_shared.contracts import Stream
from watchllm_shared.contracts.alerts import ALERTS_STREAM, DELIVERY_LOG_STREAM
from watchllm_shared.settings import DatabaseSettings, WatchLLMSettings


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class LimiterSettings(WatchLLMSettings, DatabaseSettings):
    limiter_host: str = "127.0.0.1"
    limiter_port: int = 8090
    limiter_metrics_port: int = Field(
        default=9190, description="/metrics, on a listener of its own (not the API port)."
    )
    events_stream: str = Field(default=Stream.REQUESTS_COMPLETED.value)
    limiter_consumer_group: str = "limiter"
    events_stream_groups: tuple[str, ...] = Field(
        default=("analytics", "limiter"),
        description="Every consumer group of the events stream: an event is trimmed once all"
        " of them processed it (the limiter trims; see watchllm_shared.stream_trim). A JSON"
        " list; [] leaves the stream to its MAXLEN cap.",
    )
    limiter_consumer_name: str = Field(default_factory=_default_consumer)
    limiter_full_sync_seconds: float = Field(
        default=30.0, gt=0, description="Full resync of every project's limits (safety net)."
    )
    limiter_reclaim_idle_ms: int = Field(
        default=30_000, gt=0, description="Pending events idle this long are reclaimed."
    )
    limiter_max_deliveries: int = Field(
        default=5, gt=0, description="After this many deliveries an event goes to the DLQ."
    )
    limiter_batch_size: int = Field(default=500, gt=0)
    limiter_gather_ms: int = Field(
        default=200, ge=0, le=5000,
        description="Once caught up with the events stream, wait this long for more events"
        " and charge them together (one call per project) rather than one by one: light"
        " traffic costs a wake-up per interval, not per event. Charges land up to this much"
        " later; 0 charges what each read returns at once.",
    )  # fmt: skip
    limiter_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="Heartbeat and library check interval."
    )
    limiter_alerts_stream: str = Field(
        default=ALERTS_STREAM, description="Alerts to deliver (watchllm_limiter.alerts)."
    )
    limiter_alert_log_stream: str = Field(
        default=DELIVERY_LOG_STREAM, description="The delivery log: the last ~1,000 attempts."
    )
    limiter_alert_rules_refresh_seconds: float = Field(
        default=10.0, gt=0, description="How often alert rules are re-read from Postgres."
    )
    limiter_alert_check_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How often dead letters, limiter fail-opens and error rates are checked.",
    )
    limiter_alert_retry_initial_seconds: float = Field(
        default=1.0, gt=0, description="First wait before a failed webhook call is retried."
    )
    limiter_alert_retry_max_seconds: float = Field(
        default=60.0, gt=0, description="Longest wait between retries (they never stop)."
    )
    limiter_alert_timeout_seconds: float = Field(
        default=5.0, gt=0, description="One webhook call's timeout."
    )
