"""A project's cached answers, as far as Redis can tell, read without changing anything.

The exact-cache entries (``CachedAnswer``) do not carry the question, so this reads
the recent store messages (``CACHE_STORE_STREAM``, bounded by ``CACHE_STORE_MAXLEN``),
which do, and keeps those whose entry still exists (its TTL has not run out and no flush
or deletion removed it).

Which entries: first the ``ranked`` ones (the analytics' most hit in the window, in that
order), wherever they are in the stream, then the newest others. Taking the newest
first and ranking only those left out the most used entries when they were old. A
ranked entry older than the stream remembers is still listed from its ``CachedAnswer``,
without its question (``question_known`` False).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as aioredis
from pydantic import ValidationError

from watchllm_shared.contracts.cache import CACHE_STORE_STREAM, CachedAnswer, CacheStore
from watchllm_shared.stream_group import entry_ms

SCAN_MESSAGES = 5_000
PREVIEW_CHARS = 160


@dataclass(frozen=True, slots=True)
class CachedEntry:
    key: str
    stored_at: datetime | None  # None: not known (stored before the stream's memory)
    model: str
    question: str | None  # None: stored for the exact layer only (or not known)
    answer: str
    prompt_tokens: int
    completion_tokens: int
    saves_usd: float  # what each hit on it saves
    expires_in_seconds: int
    question_known: bool = True  # False: stored before the store stream's memory


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
    redis: aioredis.Redis,
    project_id: UUID,
    ranked: Sequence[str] = (),
    limit: int = 50,
    scan: int = SCAN_MESSAGES,
) -> list[CachedEntry]:
    """Up to ``limit`` live entries of the project: the ``ranked`` keys first, in their
    order, then the newest others."""
    stored = await _stored(redis, project_id, scan)
    remembered = [key for key in ranked if key in stored]
    forgotten = [key for key in ranked if key not in stored]
    others = [key for key in stored if key not in set(ranked)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in (*remembered, *others):
            pipe.ttl(key)
        for key in forgotten:
            pipe.ttl(key)
            pipe.get(key)
        replies = iter(await pipe.execute())
    ttls = {key: next(replies) for key in (*remembered, *others)}
    bodies = {key: (next(replies), next(replies)) for key in forgotten}
    entries: list[CachedEntry] = []
    for key in (*ranked, *others):
        if len(entries) >= limit:
            break
        if key in stored:
            entry = _from_store(key, *stored[key], ttls[key])
        else:
            entry = _from_answer(key, *bodies[key])
        if entry is not None:
            entries.append(entry)
    return entries


async def _stored(
    redis: aioredis.Redis, project_id: UUID, scan: int
) -> dict[str, tuple[datetime, CacheStore]]:
    """The project's store messages among the last ``scan``, newest first, by key."""
    messages: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrevrange(
        CACHE_STORE_STREAM, count=scan
    )  # type: ignore[assignment]
    stored: dict[str, tuple[datetime, CacheStore]] = {}
    for entry_id, fields in messages:
        try:
            store = CacheStore.model_validate_json(fields[b"data"])
        except (KeyError, ValidationError):
            continue
        if store.project_id != project_id or store.exact_key in stored:
            continue
        stored[store.exact_key] = (datetime.fromtimestamp(entry_ms(entry_id) / 1000, UTC), store)
    return stored


def _live(ttl: Any) -> bool:
    return ttl is not None and int(ttl) >= 0  # gone (-2) or, unexpectedly, no expiry (-1)


def _from_store(key: str, stored_at: datetime, store: CacheStore, ttl: Any) -> CachedEntry | None:
    if not _live(ttl):
        return None
    answer = store.answer
    return CachedEntry(
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


def _from_answer(key: str, ttl: Any, body: bytes | None) -> CachedEntry | None:
    """An entry the store stream no longer remembers: its answer, not its question."""
    if not _live(ttl) or body is None:
        return None
    try:
        answer = CachedAnswer.model_validate_json(body)
    except ValidationError:
        return None
    return CachedEntry(
        key=key,
        stored_at=None,
        model=answer.model,
        question=None,
        answer=answer_text(answer.body),
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        saves_usd=float(answer.cost_usd),
        expires_in_seconds=int(ttl),
        question_known=False,
    )
