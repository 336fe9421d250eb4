"""The exact-cache key scheme, shared by the cache service (writer) and the gateway
(reader, one GET).

A key is ``watchllm:cache:exact:v3:{<project_id>}:<HMAC-SHA256 of the canonical request>``,
keyed by the server secret ``WATCHLLM_CACHE_KEY_SECRET``. The project id is the Redis
Cluster hash tag, so one project's entries live together and ``cache flush --project`` is
a scan of one tag. Bump ``CACHE_KEY_VERSION`` whenever the canonical form or the digest
changes: old entries then simply stop matching (misses) and expire with their TTL.

Why keyed (v3): keys are not secret. The request log keeps the key that answered each
hit, the dashboard's Cache page lists them, callers get theirs in
``x-watchllm-cache-key``. A plain SHA-256 (v2) let anyone who saw one confirm what a
tenant asked by hashing a guess; without the secret a key says nothing. Only the gateway
computes keys (the cache service stores under the key the gateway's store message
names), so every gateway replica needs the same secret and nothing else does. Gateways
with another secret, or of another version during a rolling upgrade, compute other keys:
their entries miss each other until all agree, and never answer each other wrongly.
Changing the secret therefore empties the exact cache in effect (the semantic layer
still finds the old entries it indexed); ``watchllm up`` keeps its secret across
restarts.

The canonical request is the JSON body with the fields that cannot change the answer
removed, plus the provider headers the gateway forwards upstream (``anthropic-version``,
``anthropic-beta``, ``openai-beta``: they select API versions and beta features, such as
a longer context or output), serialised with sorted keys. Everything else (messages,
system prompt, tools, temperature, seed, n, response_format, ...) is part of the key, so
an exact hit can only ever return the answer to the very same question. Which headers
are forwarded is the gateway's business (``cache_flow.forwarded_headers``): callers pass
them, lower-cased, with their exact values. v2 added them; v1 entries stop matching.

Beside the entries, two kinds of markers (same hash tag as the project's entries, so a
store can check them and write its entry in one script, also on Redis Cluster) stop a
store queued before a flush or a deletion from bringing the entry back
(``flush_marker_key``, ``delete_marker_key``; see the cache service's ``stores``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson

CACHE_KEY_VERSION = 3  # v3: HMAC with the server secret; v2: plain SHA-256

_EXACT_KEY = re.compile(r"^watchllm:cache:exact:v\d+:\{([0-9a-f-]{36})\}:[0-9a-f]{64}$")

# Fields that shape transport or bookkeeping, not the answer.
_NON_SEMANTIC_FIELDS = frozenset({"stream", "stream_options", "user", "metadata", "store"})


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items()}


def canonical_request(
    endpoint: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> bytes:
    """The bytes the exact cache hashes: endpoint, forwarded provider headers and
    answer-shaping fields, sorted."""
    kept = {k: v for k, v in body.items() if k not in _NON_SEMANTIC_FIELDS}
    return orjson.dumps({"endpoint": endpoint, "headers": _headers(headers), "body": kept},
                        option=orjson.OPT_SORT_KEYS)  # fmt: skip


def exact_cache_key(
    project_id: UUID,
    endpoint: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    *,
    secret: bytes,
) -> str:
    """``headers``: the provider headers forwarded upstream with the request; ``secret``:
    the server's ``WATCHLLM_CACHE_KEY_SECRET`` (the same in every gateway)."""
    canonical = canonical_request(endpoint, body, headers)
    digest = hmac.new(secret, canonical, hashlib.sha256).hexdigest()
    return f"watchllm:cache:exact:v{CACHE_KEY_VERSION}:{{{project_id}}}:{digest}"


def project_cache_pattern(project_id: UUID) -> str:
    """SCAN pattern matching every exact entry of one project, of every key version (a
    flush also drops what an older scheme left until its TTL)."""
    return f"watchllm:cache:exact:v*:{{{project_id}}}:*"


def flush_marker_key(project_id: UUID) -> str:
    """The store-stream id up to which a flush of the project discarded queued stores."""
    return f"watchllm:cache:flushed:{{{project_id}}}"


def delete_marker_key(exact_key: str) -> str:
    """The store-stream id up to which a deletion of ``exact_key`` discarded queued
    stores. Its hash tag is the exact key's (the first ``{...}`` in it)."""
    return f"watchllm:cache:deleted:{exact_key}"


def project_of_exact_key(key: str) -> UUID | None:
    """The project an exact-cache key belongs to, or None when it is not such a key."""
    match = _EXACT_KEY.match(key)
    return UUID(match.group(1)) if match else None


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or a list made only of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "\n".join(texts)  # type: ignore[arg-type]
    return None


def semantic_parts(
    endpoint: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """(scope, question) for the semantic layer, or None when it must not apply.

    The question is the last message's text; it must come from the user. The scope is
    a hash of everything else that shapes the answer — endpoint, forwarded provider
    headers, model, system prompt, every earlier turn, tools, temperature, n, seed,
    response format… — so a semantic hit can only ever match within an identical context.
    The scope is a plain SHA-256, not keyed like exact keys: it is kept only in the ask
    and store streams and the index, beside the question itself in clear, and is shown
    to no one.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    question = _text_of(last.get("content"))
    if question is None or not question.strip():
        return None
    context = {k: v for k, v in body.items() if k not in _NON_SEMANTIC_FIELDS}
    context["messages"] = messages[:-1]
    canonical = orjson.dumps(
        {"endpoint": endpoint, "headers": _headers(headers), "context": context},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest(), question
