"""The routing stack the end-to-end modules share (one gateway for the package): a
gateway process with a routes file in front of several fake-provider processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.routing.fakes import start_fake
from tests.support.processes import ServiceProcess, free_port, start_gateway

AZURE_KEY = "azure-test-key"

ROUTES = """
models:
  - name: weighted
    deployments:
      - {{provider: openai, base_url: "{a}/v1", weight: 1, name: weighted-a}}
      - {{provider: openai, base_url: "{b}/v1", weight: 3, name: weighted-b}}
  - name: steady
    deployments:
      - {{provider: openai, base_url: "{k}/v1", name: steady-k}}
      - {{provider: openai, base_url: "{b}/v1", name: steady-b}}
  - name: primary
    deployments: [{{provider: openai, base_url: "{dead}/v1", name: primary-dead}}]
    fallbacks: [fb-fail, fb-ok]
  - name: primary-long
    deployments: [{{provider: openai, base_url: "{dead}/v1", name: long-dead}}]
    fallbacks: [fb-fail-2, fb-fail-3, fb-ok]
  # Capacity (test_routing_e2e): a minute's rpm/tpm, across replicas, kept in Redis.
  - name: capped
    deployments:
      - {{provider: openai, base_url: "{a}/v1", rpm: 1, name: capped-a}}
      - {{provider: openai, base_url: "{b}/v1", rpm: 1, name: capped-b}}
  - name: token-capped
    deployments: [{{provider: openai, base_url: "{a}/v1", tpm: 1, name: token-capped-a}}]
  - name: fb-fail
    deployments: [{{provider: openai, base_url: "{failing}/v1"}}]
  - name: fb-fail-2
    deployments: [{{provider: openai, base_url: "{failing}/v1"}}]
  - name: fb-fail-3
    deployments: [{{provider: openai, base_url: "{failing}/v1"}}]
  - name: fb-ok
    deployments: [{{provider: openai, base_url: "{a}/v1"}}]
  # Translation (test_translation_e2e): priced model names, each served in the other shape.
  - name: claude-haiku-4-5
    deployments: [{{provider: anthropic, base_url: "{a}", name: claude-a}}]
  - name: gpt-4o-mini
    deployments: [{{provider: openai, base_url: "{b}/v1", name: gpt-b}}]
  - name: gpt-4.1-mini
    deployments: [{{provider: openai, base_url: "{failing}/v1", name: gpt41-failing}}]
    fallbacks: [claude-haiku-4-5]
  - name: gpt-4o
    deployments:
      - {{provider: azure, base_url: "{a}", api_version: "2024-10-21", azure_deployment: prod-4o,
          api_key_env: WATCHLLM_TEST_AZURE_KEY, name: azure-a}}
"""


@dataclass
class Stack:
    gateway: ServiceProcess
    stream: str
    fakes: dict[str, ServiceProcess]
    killable_port: int


@pytest.fixture(scope="package")
def stack(
    redis_url: str, database_url: str, log_dir: Path, tmp_path_factory: pytest.TempPathFactory,
    limiter_library: None,
) -> Iterator[Stack]:  # fmt: skip
    port = free_port()
    fakes = {
        "a": start_fake(log_dir), "b": start_fake(log_dir),
        # Slow enough that requests are in flight when it is killed.
        "k": start_fake(log_dir, "--delay", "0.02", port=port),
        "failing": start_fake(log_dir, "--error-rate", "1", "--error-status", "500"),
    }  # fmt: skip
    urls = {name: fake.url for name, fake in fakes.items()}
    path = tmp_path_factory.mktemp("routes") / "routes.yaml"
    path.write_text(ROUTES.format(dead=f"http://127.0.0.1:{free_port()}", **urls))
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = {
        "REDIS_URL": redis_url, "DATABASE_URL": database_url, "WATCHLLM_ROUTES_FILE": str(path),
        "WATCHLLM_EVENTS_STREAM": stream, "WATCHLLM_CACHE_ENABLED": "false",
        "WATCHLLM_UPSTREAM_RETRY_BACKOFF_SECONDS": "0.01",
        "WATCHLLM_UPSTREAM_COOLDOWN_SECONDS": "0.2",
        "WATCHLLM_UPSTREAM_COOLDOWN_MAX_SECONDS": "1",
        "WATCHLLM_DEFAULT_ALLOWED_MODELS": '["*"]',  # these model names have no price
        "WATCHLLM_TEST_AZURE_KEY": AZURE_KEY,
    }  # fmt: skip
    gateway = start_gateway(env, log_dir)
    yield Stack(gateway, stream, fakes, port)
    gateway.stop()
    for fake in fakes.values():
        fake.stop()
