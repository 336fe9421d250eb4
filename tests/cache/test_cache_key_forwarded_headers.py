"""Provider headers the gateway forwards upstream (``anthropic-beta``, ``anthropic-version``,
``openai-beta``) select API versions and beta features, so they are part of the exact
key and of the semantic scope; headers that are not forwarded are not."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from watchllm_gateway.cache_flow import CachePlan, plan_cache
from watchllm_gateway.endpoints import CHAT_COMPLETIONS, MESSAGES, EndpointSpec
from watchllm_gateway.routing import Deployment
from watchllm_gateway.upstream import UpstreamClient, provider_headers
from watchllm_shared.accounts import KeyGrant, Plan
from watchllm_shared.contracts.cache_keys import CACHE_KEY_VERSION

pytestmark = pytest.mark.unit

GRANT = KeyGrant(uuid.uuid4(), uuid.uuid4(), "p", Plan.PRO, True, None, 1000)
CLAUDE: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 1024,
          "messages": [{"role": "user", "content": "Summarise this document."}]}  # fmt: skip
GPT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi."}]}
V = {"anthropic-version": "2023-06-01"}
SECRET = b"cache-key-secret-of-these-tests-0123456789"


def plan(spec: EndpointSpec, body: dict[str, Any], headers: dict[str, str]) -> CachePlan:
    planned = plan_cache(GRANT, spec, body, headers, provider_headers(spec.api, headers),
                         secret=SECRET)  # fmt: skip
    assert planned is not None and planned.semantic is not None
    return planned


def test_a_different_anthropic_beta_is_a_different_key_and_scope() -> None:
    plain = plan(MESSAGES, CLAUDE, V)
    beta = plan(MESSAGES, CLAUDE, {**V, "anthropic-beta": "context-1m-2025-08-07"})
    other_beta = plan(MESSAGES, CLAUDE, {**V, "anthropic-beta": "output-128k-2025-02-19"})
    keys = {plain.exact_key, beta.exact_key, other_beta.exact_key}
    scopes = {p.semantic[0] for p in (plain, beta, other_beta) if p.semantic}
    assert len(keys) == 3 and len(scopes) == 3
    assert beta.semantic is not None and beta.semantic[1] == "Summarise this document."


def test_the_same_forwarded_headers_give_the_same_key_and_scope() -> None:
    headers = {**V, "anthropic-beta": "context-1m-2025-08-07"}
    first, again = plan(MESSAGES, CLAUDE, headers), plan(MESSAGES, CLAUDE, dict(headers))
    assert first.exact_key == again.exact_key and first.semantic == again.semantic
    assert first.exact_key.startswith(f"watchllm:cache:exact:v{CACHE_KEY_VERSION}:")
    assert CACHE_KEY_VERSION >= 2  # v1 keys lacked the headers: they must stop matching
    # Headers the gateway does not forward do not split the cache.
    noise = {**headers, "x-request-id": "abc", "openai-beta": "assistants=v2", "accept": "*/*"}
    assert plan(MESSAGES, CLAUDE, noise).exact_key == first.exact_key


def test_anthropic_version_counts_with_the_default_the_gateway_sends() -> None:
    assert plan(MESSAGES, CLAUDE, {}).exact_key == plan(MESSAGES, CLAUDE, V).exact_key
    newer = plan(MESSAGES, CLAUDE, {"anthropic-version": "2024-01-01"})
    assert newer.exact_key != plan(MESSAGES, CLAUDE, V).exact_key


def test_openai_beta_counts_on_chat_completions_and_anthropic_headers_do_not() -> None:
    plain = plan(CHAT_COMPLETIONS, GPT, {})
    beta = plan(CHAT_COMPLETIONS, GPT, {"openai-beta": "assistants=v2"})
    assert plain.exact_key != beta.exact_key and plain.semantic != beta.semantic
    assert plan(CHAT_COMPLETIONS, GPT, {"anthropic-beta": "x"}).exact_key == plain.exact_key


@pytest.mark.parametrize("spec", [MESSAGES, CHAT_COMPLETIONS], ids=["messages", "chat"])
def test_the_key_covers_exactly_what_upstream_sends(spec: EndpointSpec) -> None:
    incoming = {"anthropic-version": "2023-06-01", "anthropic-beta": "b1", "openai-beta": "o1",
                "anthropic-other": "z", "openai-organization": "org"}  # fmt: skip
    route = Deployment("d", spec.api, "http://127.0.0.1:1", SecretStr("k"))
    forwarded = provider_headers(spec.api, incoming)  # what the proxy hands to both
    sent = UpstreamClient._headers(route, forwarded)
    to_provider = {k: v for k, v in sent.items() if k.startswith(("anthropic-", "openai-"))}
    assert forwarded == to_provider
    assert plan(spec, CLAUDE if spec is MESSAGES else GPT, incoming).exact_key == plan_cache(
        GRANT, spec, CLAUDE if spec is MESSAGES else GPT, {}, to_provider, secret=SECRET
    ).exact_key  # fmt: skip
