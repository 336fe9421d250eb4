"""A real gateway process in front of the fake provider, per test module."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import ServiceProcess, free_port, start_gateway, start_process

FAKE_PROVIDER_KEY = "sk-fake-provider-key-0123456789"


@dataclass
class Gateway:
    process: ServiceProcess
    stream: str
    url: str


def gateway_env(
    fake_url: str, redis_url: str, database_url: str, stream: str, **extra: str
) -> dict[str, str]:
    routes = [
        {"pattern": "claude-*", "provider": "anthropic", "base_url": fake_url,
         "api_key_env": "WATCHLLM_TEST_FAKE_KEY", "models": ["claude-haiku-4-5"]},
        {"pattern": "gpt-*", "provider": "openai", "base_url": f"{fake_url}/v1",
         "api_key_env": "WATCHLLM_TEST_FAKE_KEY", "models": ["gpt-4o-mini", "gpt-4o"]},
        {"pattern": "text-embedding-*", "provider": "openai", "base_url": f"{fake_url}/v1",
         "api_key_env": "WATCHLLM_TEST_FAKE_KEY"},
    ]  # fmt: skip
    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "WATCHLLM_ROUTES": json.dumps(routes),
        "WATCHLLM_TEST_FAKE_KEY": FAKE_PROVIDER_KEY,
        "WATCHLLM_EVENTS_STREAM": stream,
        "WATCHLLM_UPSTREAM_READ_TIMEOUT_SECONDS": "1.5",
        "WATCHLLM_UPSTREAM_RETRY_BACKOFF_SECONDS": "0.01",
        "WATCHLLM_MAX_BODY_BYTES": str(256 * 1024),
        # Gateway tests run without a cache service; the cache tests turn it on.
        "WATCHLLM_CACHE_ENABLED": "false",
        **extra,
    }


def gateway_in_front_of(
    upstream_url: str, redis_url: str, database_url: str, log_dir: Path, **extra: str
) -> Iterator[Gateway]:
    """A gateway process routing every model to ``upstream_url``, with its own events
    stream; stopped when the generator is closed (a fixture's teardown)."""
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(upstream_url, redis_url, database_url, stream, **extra)
    process = start_gateway(env, log_dir)
    yield Gateway(process, stream, process.url)
    process.stop()


@pytest.fixture(scope="module")
def gateway(
    fake_provider: ServiceProcess,
    redis_url: str,
    database_url: str,
    log_dir: Path,
    limiter_library: None,
) -> Iterator[Gateway]:
    yield from gateway_in_front_of(fake_provider.url, redis_url, database_url, log_dir)


@pytest.fixture(scope="module")
def misbehaving_provider(log_dir: Path) -> Iterator[ServiceProcess]:
    """``tests.support.misbehaving_provider`` on two ports; its ``url`` is the first."""
    port, other = free_port(), free_port()
    process = start_process(
        "tests.support.misbehaving_provider", [str(port), str(other)], {},
        f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}",
        log_dir / f"misbehaving-provider-{port}.log",
    )  # fmt: skip
    yield process
    process.stop()


@pytest.fixture(scope="module")
def misbehaving_gateway(
    misbehaving_provider: ServiceProcess,
    redis_url: str,
    database_url: str,
    log_dir: Path,
    limiter_library: None,
) -> Iterator[Gateway]:
    """A gateway whose routes (``gpt-*``, ``claude-*``) lead to the misbehaving provider.
    Its models (``gpt-redirect``, ``claude-nullusage``…) have no price: every model is
    allowed, as before the default allow-list (``model_access``)."""
    yield from gateway_in_front_of(misbehaving_provider.url, redis_url, database_url, log_dir,
                                   WATCHLLM_DEFAULT_ALLOWED_MODELS='["*"]')  # fmt: skip
