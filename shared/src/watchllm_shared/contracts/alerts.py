"""Alerts (issue 16): the contract between whoever raises an alert (the limiter's rules,
``watchllm alerts test``), the limiter's delivery consumer, and whoever reads the
delivery log (the dashboard, later).

- ``ALERTS_STREAM`` carries one ``Alert`` per delivery to make (field ``data``), read by
  the limiter's group ``ALERTS_GROUP``: an entry is acknowledged only once its webhook
  answered 2xx, so an alert survives any restart of the delivering service.
- ``DELIVERY_LOG_STREAM`` keeps the last ``DELIVERY_LOG_MAXLEN`` attempts (approximate
  MAXLEN), one entry each: ``DeliveryRecord`` as JSON in ``data``. Its target is the
  webhook's scheme and host only: a URL's path often is a secret (Slack's are).
- A webhook with a secret is signed: header ``x-watchllm-signature: sha256=<hex>``, the
  HMAC-SHA256 of ``<x-watchllm-timestamp>.<body>`` keyed with the secret, like Stripe's;
  a receiver recomputes it and refuses old timestamps (``signature``).
- Dedupe keys (``dedupe_key``) share the stream's hash tag, so the limiter's
  set-then-append runs as one script on one Redis Cluster node.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

ALERTS_STREAM = "watchllm.alerts.v1"
ALERTS_GROUP = "alerts"
DELIVERY_LOG_STREAM = "watchllm.alerts.deliveries.v1"
DELIVERY_LOG_MAXLEN = 1000

SIGNATURE_HEADER = "x-watchllm-signature"
TIMESTAMP_HEADER = "x-watchllm-timestamp"
ALERT_ID_HEADER = "x-watchllm-alert-id"

MAX_URL_CHARS = 2048
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class AlertKind(StrEnum):
    BUDGET = "budget"
    ERROR_RATE = "error-rate"
    LIMITER_OPEN = "limiter-open"
    DEAD_LETTERS = "dead-letters"


class AlertFormat(StrEnum):
    JSON = "json"
    SLACK = "slack"  # {"text": ...}: Slack's incoming webhooks, and Mattermost's, Teams' "text"


class Alert(BaseModel):
    """One delivery to make: what happened and where to send it. The secret itself is
    never here, only the name of the limiter's environment variable that holds it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    alert_id: uuid.UUID
    kind: str  # an AlertKind, or "test"
    rule_id: uuid.UUID
    project_id: uuid.UUID | None = None
    text: str
    details: dict[str, str | int | float | None] = Field(default_factory=dict)
    occurred_at: datetime
    webhook_url: str
    format: AlertFormat = AlertFormat.JSON
    secret_env: str | None = None

    def to_stream_fields(self) -> dict[str, bytes]:
        return {"data": self.model_dump_json().encode()}

    @classmethod
    def from_stream_fields(cls, fields: dict[bytes, bytes]) -> Alert:
        return cls.model_validate_json(fields[b"data"])

    def body(self) -> bytes:
        """What the webhook receives."""
        if self.format is AlertFormat.SLACK:
            return Slack(text=self.text).model_dump_json().encode()
        payload = Payload(
            id=self.alert_id, kind=self.kind, rule_id=self.rule_id, project_id=self.project_id,
            text=self.text, details=self.details, occurred_at=self.occurred_at,
        )  # fmt: skip
        return payload.model_dump_json().encode()


class Payload(BaseModel):
    id: uuid.UUID
    kind: str
    rule_id: uuid.UUID
    project_id: uuid.UUID | None
    text: str
    details: dict[str, str | int | float | None]
    occurred_at: datetime


class Slack(BaseModel):
    text: str


class DeliveryRecord(BaseModel):
    """One attempt, as the delivery log keeps it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    alert_id: uuid.UUID
    rule_id: uuid.UUID
    kind: str
    project_id: uuid.UUID | None = None
    attempt: int
    delivered: bool
    http_status: int | None = None
    error: str | None = None  # the failure's kind, never a URL or a secret
    target: str  # scheme://host[:port]
    at: datetime

    @classmethod
    def from_stream_fields(cls, fields: dict[bytes, bytes]) -> DeliveryRecord:
        return cls.model_validate_json(fields[b"data"])


async def recent_deliveries(
    redis: aioredis.Redis, count: int = 100, stream: str = DELIVERY_LOG_STREAM
) -> list[DeliveryRecord]:
    """The newest ``count`` attempts, newest first (what the dashboard shows)."""
    entries: Any = await redis.xrevrange(stream, count=count)
    return [DeliveryRecord.from_stream_fields(fields) for _, fields in entries]


def webhook_url_error(url: str) -> str | None:
    """Why ``url`` cannot be a webhook, or None when it can."""
    if len(url) > MAX_URL_CHARS:
        return f"a webhook URL has at most {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"a webhook URL must start with http:// or https:// (got {parts.scheme or 'none'}:)"
    if not parts.hostname:
        return "a webhook URL needs a host"
    if any(c.isspace() for c in url):
        return "a webhook URL cannot contain spaces"
    return None


def target_of(url: str) -> str:
    """``https://hooks.example.com``: what may be shown and logged of a webhook URL."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def env_name_error(name: str) -> str | None:
    if _ENV_NAME.fullmatch(name) is None:
        return f"{name!r} is not an environment variable name (letters, digits, _)"
    return None


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``x-watchllm-signature`` value for a body sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def dedupe_key(stream: str, *parts: object) -> str:
    """A key that says "this alert was raised" for one window (the stream's slot)."""
    return "{" + stream + "}:sent:" + ":".join(str(p) for p in parts)
