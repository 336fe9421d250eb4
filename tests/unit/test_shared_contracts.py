"""Shared contracts: keys, cache keys, events, heartbeats, log redaction."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
import uuid
from datetime import UTC, datetime
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from watchllm_shared.accounts.keys import display_prefix, generate_key, hash_key, looks_like_key
from watchllm_shared.contracts import RequestCompleted, RequestStatus
from watchllm_shared.contracts.cache_keys import (
    CACHE_KEY_VERSION,
    canonical_request,
    exact_cache_key,
    project_cache_pattern,
    project_of_exact_key,
)
from watchllm_shared.contracts.health import Heartbeat, heartbeat
from watchllm_shared.telemetry import RedactingFilter, redact

pytestmark = pytest.mark.unit


def test_generated_keys_are_unique_well_formed_and_hashed_to_32_bytes() -> None:
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    key = keys.pop()
    assert looks_like_key(key) and key.startswith("lgw_")
    assert len(hash_key(key)) == 32 and hash_key(key) != hash_key(generate_key())
    assert display_prefix(key) == key[:12]
    assert not looks_like_key("lgw_short") and not looks_like_key("sk-" + key[4:])


SECRET = b"cache-key-secret-of-these-tests-0123456789"


def test_exact_cache_key_ignores_transport_fields_but_not_answer_shaping_ones() -> None:
    project = uuid.uuid4()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}

    def key_of(project: uuid.UUID, body: dict[str, object]) -> str:
        return exact_cache_key(project, "/v1/chat/completions", body, secret=SECRET)

    key = key_of(project, body)
    assert key == key_of(project, {**body, "stream": True})
    assert key != key_of(project, {**body, "temperature": 1})
    assert key != key_of(uuid.uuid4(), body)
    assert key.startswith(f"watchllm:cache:exact:v{CACHE_KEY_VERSION}:{{{project}}}:")


def test_an_exact_key_cannot_be_recomputed_without_the_secret() -> None:
    """Issue 22: v2 keys were the plain SHA-256 of the canonical request, so anyone who saw
    one (request log, dashboard) could confirm a guessed question. v3 keys are HMACs."""
    project = uuid.uuid4()
    body = {"model": "m", "messages": [{"role": "user", "content": "my diagnosis is …"}]}
    key = exact_cache_key(project, "/v1/chat/completions", body, secret=SECRET)
    canonical = canonical_request("/v1/chat/completions", body)
    assert hashlib.sha256(canonical).hexdigest() not in key
    assert key.rsplit(":", 1)[1] == hmac.new(SECRET, canonical, hashlib.sha256).hexdigest()
    assert key != exact_cache_key(project, "/v1/chat/completions", body, secret=SECRET + b"x")
    assert CACHE_KEY_VERSION == 3 and project_of_exact_key(key) == project
    # A flush finds the project's entries of every version, the old ones' too.
    pattern = project_cache_pattern(project)
    old = f"watchllm:cache:exact:v2:{{{project}}}:{hashlib.sha256(canonical).hexdigest()}"
    other = exact_cache_key(uuid.uuid4(), "/v1/chat/completions", body, secret=SECRET)
    assert fnmatch.fnmatchcase(key, pattern) and fnmatch.fnmatchcase(old, pattern)
    assert not fnmatch.fnmatchcase(other, pattern)


def test_event_round_trips_through_stream_fields_and_ignores_unknown_fields() -> None:
    event = RequestCompleted(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), request_id="req_1",
        endpoint="/v1/chat/completions", http_status=200, status=RequestStatus.OK,
        latency_ms=1.5,
    )  # fmt: skip
    fields = {k.encode(): v for k, v in event.to_stream_fields().items()}
    assert RequestCompleted.from_stream_fields(fields) == event
    newer = fields[b"data"][:-1] + b',"field_from_the_future":1}'
    assert RequestCompleted.from_stream_fields({b"data": newer}) == event


def test_secrets_are_masked_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    key = generate_key()
    assert key not in redact(f"auth with {key}")
    assert "sk-ant-api03-abcdefghijkl" not in redact("x sk-ant-api03-abcdefghijkl y")
    assert "abcdef123456" not in redact("Authorization: Bearer abcdef123456")
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("key %s used", key)
    assert key not in caplog.text and key[:10] in caplog.text


def test_secrets_in_arguments_of_any_type_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    """Bodies are logged as bytes (``WATCHLLM_LOG_BODIES``); secrets also hide in
    mappings, objects and tracebacks (issue 22, finding 10)."""
    key, provider = generate_key(), "sk-proj-" + "Ab3" * 16

    class Holder:
        def __str__(self) -> str:
            return f"holder of {provider}"

    logger = logging.getLogger("test.redaction.types")
    logger.addFilter(RedactingFilter())
    body = f'{{"messages":[{{"content":"use {key} and {provider}"}}]}}'.encode()
    with caplog.at_level(logging.INFO, logger="test.redaction.types"):
        logger.info("body: %s %r", body, bytearray(body))
        logger.info("%(who)s sent %(n)d: %(what)s", {"who": Holder(), "n": 3, "what": body})
        try:
            raise ValueError(f"bad key {key}")
        except ValueError:
            logger.exception("failed %d", 1)
    assert key not in caplog.text and provider not in caplog.text
    assert key[10:] not in caplog.text and provider[10:] not in caplog.text
    assert f'body: {{"messages":[{{"content":"use {key[:10]}…[redacted]' in caplog.text
    assert "holder of sk-pr…[redacted] sent 3:" in caplog.text and "failed 1" in caplog.text
    assert f"ValueError: bad key {key[:10]}…[redacted]" in caplog.text


class FirstHeartbeat(BaseModel):
    """The heartbeat as gateways before ``stores`` read it."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    service: str
    instance: str
    at: datetime
    status: Literal["up", "degraded"] = "up"
    dependencies: dict[str, Literal["up", "down"]] = {}


def test_heartbeats_are_understood_across_a_rolling_deploy() -> None:
    new = heartbeat("cache", "c-1", "degraded", {"qdrant": "disconnected"}).model_dump_json()
    assert Heartbeat.model_validate_json(new).store("qdrant") == "disconnected"
    assert FirstHeartbeat.model_validate_json(new).dependencies == {"qdrant": "down"}
    at = datetime.now(UTC).isoformat()
    old = f'{{"service": "analytics", "instance": "a-1", "at": "{at}", "status": "up", '
    understood = Heartbeat.model_validate_json(old + '"dependencies": {"clickhouse": "up"}}')
    assert understood.store("clickhouse") == "connected"
    assert understood.store("qdrant") is None  # not a store this service reports
    down = Heartbeat.model_validate_json(old + '"dependencies": {"clickhouse": "down"}}')
    assert down.store("clickhouse") == "disconnected"
