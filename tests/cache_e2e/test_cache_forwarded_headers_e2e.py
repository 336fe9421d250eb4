"""Through a real gateway and cache service: a request whose forwarded provider header
(``anthropic-beta``) differs from the cached one's is a miss, in the exact layer and in
the semantic one; the very same headers hit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.cache_e2e import test_cache_through_gateway as through_gateway
from tests.cache_e2e.test_cache_through_gateway import Stack, new_key, until_stored

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

stack = through_gateway.stack  # the same gateway + cache service fixture (this module's own)


def claude(stack: Stack, key: str, text: str, **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 64,
                            "messages": [{"role": "user", "content": text}]}  # fmt: skip
    response = httpx.post(f"{stack.gateway.url}/v1/messages", json=body, timeout=10,
                          headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                                   **headers})  # fmt: skip
    assert response.status_code == 200, response.text
    return response


def test_a_different_anthropic_beta_header_is_a_miss(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    key = new_key(database_url)
    beta = {"anthropic-beta": "context-1m-2025-08-07"}
    first = claude(stack, key, "Summarise the history of Lisbon.", **beta)
    assert first.headers["x-watchllm-cache"] == "miss"
    until_stored(redis_url, dict(first.headers))
    same = claude(stack, key, "Summarise the history of Lisbon.", **beta)
    assert same.headers["x-watchllm-cache"] == "hit"
    assert same.headers["x-watchllm-cache-key"] == first.headers["x-watchllm-cache-key"]
    # A rephrasing is a semantic hit with the same beta header only.
    rephrased = claude(stack, key, "summarise the history of lisbon", **beta)
    assert rephrased.headers["x-watchllm-cache"] == "hit"
    third = {"anthropic-beta": "token-efficient-tools-2025-02-19"}
    rephrased = claude(stack, key, "summarise the history of lisbon", **third)
    assert rephrased.headers["x-watchllm-cache"] == "miss"
    # The very same request with another beta header, or none, is an exact miss.
    for headers in ({"anthropic-beta": "output-128k-2025-02-19"}, {}):
        response = claude(stack, key, "Summarise the history of Lisbon.", **headers)
        assert response.headers["x-watchllm-cache"] == "miss", headers
        assert response.headers["x-watchllm-cache-key"] != first.headers["x-watchllm-cache-key"]
