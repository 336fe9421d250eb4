"""Contracts of the semantic cache, shared by the gateway and the cache service.

Exact layer: the gateway reads ``exact_cache_key`` (see ``cache_keys``) with one GET;
the value is a ``CachedAnswer`` JSON document written by the cache service.

Semantic layer, asked over Redis (the cache service owns embedding and Qdrant):
- the gateway XADDs a ``SemanticAsk`` to ``SEMANTIC_ASK_STREAM``; the cache service's
  consumer group (``SEMANTIC_ASK_GROUP``, any number of replicas) answers on the asking
  gateway replica's own pub/sub channel (``reply_channel``) with a ``SemanticAnswer``;
  the gateway matches it by ``request_id`` and gives up at its deadline (a miss);
- on a hit, the answer names the exact key whose ``CachedAnswer`` the gateway GETs.

Stores, after the answer was sent: the gateway XADDs a ``CacheStore`` to
``CACHE_STORE_STREAM``; the cache service writes the body under the exact key (with
the TTL) and indexes the question's embedding, reusing the one computed at lookup
(kept under ``lookup_embedding_key(request_id)`` for a few minutes).

Asks and stores are stream entries with the document in field ``data``; when the
gateway traces, ``traceparent`` (and ``tracestate``) ride next to it (optional, see
``trace_context``), so the cache service's spans join the request's trace.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

SEMANTIC_ASK_STREAM = "watchllm.cache.asks.v1"
SEMANTIC_ASK_GROUP = "cache"
# Asks older than their deadline are useless and stores are only cache fill: both
# streams stay short, so a cache service that is down costs Redis little memory.
SEMANTIC_ASK_MAXLEN = 10_000
CACHE_STORE_STREAM = "watchllm.cache.stores.v1"
CACHE_STORE_GROUP = "cache"
CACHE_STORE_MAXLEN = 10_000
LOOKUP_EMBEDDING_TTL_SECONDS = 300
# The longest question the semantic layer takes (characters). The embedding model reads
# the first 256 tokens only, so past this two questions differ where it cannot see, and
# embedding more is pure cost (a 4 MB question: ~3.4 s of the cache service's CPU). The
# gateway sends no ask and no question to store past it (exact layer only); the cache
# service refuses such an ask and indexes no such question, for a gateway that did.
MAX_SEMANTIC_QUESTION_CHARS = 4096
CACHE_COMMAND_STREAM = "watchllm.cache.commands.v1"

Endpoint = Literal["/v1/chat/completions", "/v1/messages"]


def lookup_embedding_key(request_id: str) -> str:
    return f"watchllm:cache:lookup-embedding:{request_id}"


def reply_channel(gateway_instance: str) -> str:
    return f"watchllm:cache:replies:{gateway_instance}"


class SemanticAsk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    request_id: str
    reply_to: str  # pub/sub channel of the asking gateway replica
    project_id: UUID
    scope: str  # hash of everything but the last user message (see cache_keys)
    question: str  # the last user message's text
    threshold: float | None = None  # the project's bar; None: the service's default
    # Added later (add-only): the request's own bar, which may only raise the other.
    min_threshold: float | None = None
    deadline_unix_ms: int  # past this, nobody is waiting: skip the work


class SemanticAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    request_id: str
    hit: bool
    exact_key: str | None = None  # where the CachedAnswer lives, on a hit
    similarity: float | None = None
    reason: str | None = None  # why a candidate was refused (for logs and metrics)


class CachedAnswer(BaseModel):
    """A complete, successful answer, in the shape of the endpoint that produced it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    endpoint: Endpoint
    model: str
    body: str  # the non-stream JSON response (streamed answers are assembled into it)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: str  # Decimal as text: what serving it from cache saves


class CacheStore(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    request_id: str
    project_id: UUID
    exact_key: str
    scope: str | None  # None: exact layer only (semantic off, or not a user question)
    question: str | None
    ttl_seconds: int
    answer: CachedAnswer


class CacheCommand(BaseModel):
    """An operator's request to the cache service (the only writer of cache stores)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    op: Literal["flush_project", "delete"]
    project_id: UUID | None = None
    exact_key: str | None = None
