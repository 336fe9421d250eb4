"""A project's cached answers, as far as Redis can tell, read without changing anything.

The exact-cache entries (``CachedAnswer``) do not carry the question, so this reads
the recent store messages (``CACHE_STORE_STREAM``, bounded by ``CACHE_STORE_MAXLEN``),
which do, and keeps those whose entry still exists (its TTL has not run out and no flush
or deletion removed it). Older entries than the stream remembers are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as aioredis
from pydantic import ValidationError

from watchllm_shared.contracts.cache import CACHE_STORE_STREAM, CacheStore
from watchllm_shared.stream_group import entry_ms

SCAN_MESSAGES = 5_000
PREVIEW_CHARS = 160


@dataclass(frozen=True, slots=True)
class CachedEntry:
    key: str
    stored_at: datetime
    model: str
    question: str | None  # None: stored for the exact layer only
    answer: str
    prompt_tokens: int
    completion_tokens: int
    saves_usd: float  # what each hit on it saves
    expires_in_seconds: int


def answer_text(body: str) -> str:
    """The answer's text from an OpenAI or Anthropic response body (cut for a preview)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:PREVIEW_CHARS]
    text = ""
    if isinstance(data, dict) and data.get("choices"):
        text = str(((data["choices"][0] or {}).get("message") or {}).get("content") or "")
    elif isinstance(data, dict) and isinstance(data.get("content"), list):
        text = " ".join(str(p.get("text", "")) for p in data["content"] if isinstance(p, dict))
    return text[:PREVIEW_CHARS]


async def cached_entries(
    redis: aioredis.Redis, project_id: UUID, limit: int = 50, scan: int = SCAN_MESSAGES
) -> list[CachedEntry]:
    """Up to ``limit`` live entries of the project, newest first."""
    messages: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrevrange(
        CACHE_STORE_STREAM, count=scan
    )  # type: ignore[assignment]
    candidates: dict[str, tuple[datetime, CacheStore]] = {}
    for entry_id, fields in messages:
        try:
            store = CacheStore.model_validate_json(fields[b"data"])
        except (KeyError, ValidationError):
            continue
        if store.project_id != project_id or store.exact_key in candidates:
            continue
        stored_at = datetime.fromtimestamp(entry_ms(entry_id) / 1000, UTC)
        candidates[store.exact_key] = (stored_at, store)
    if not candidates:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in candidates:
            pipe.ttl(key)
        ttls = await pipe.execute()
    entries = []
    for (key, (stored_at, store)), ttl in zip(candidates.items(), ttls, strict=True):
        if ttl is None or int(ttl) < 0:  # gone (-2) or, unexpectedly, without expiry (-1)
            continue
        answer = store.answer
        entries.append(
            CachedEntry(
                key=key,
                stored_at=stored_at,
                model=answer.model,
                question=store.question,
                answer=answer_text(answer.body),
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                saves_usd=float(answer.cost_usd),
                expires_in_seconds=int(ttl),
            )
        )
        if len(entries) >= limit:
            break
    return entries
