"""Flushing a project's cache and deleting one entry: the one path the CLI
(``watchllm cache flush|delete``) and the dashboard share.

The cache service is the only writer of the cache's stores, so these send it a
:class:`CacheCommand` on ``CACHE_COMMAND_STREAM``; it applies the command within a
second while running, or when it next starts. The audit row and the XADD happen in one
Postgres transaction: if Redis refuses the command, no audit row claims it was sent.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from watchllm_shared.accounts.audit import audit
from watchllm_shared.accounts.errors import InvalidInputError
from watchllm_shared.accounts.models import Project
from watchllm_shared.accounts.store import AccountStore
from watchllm_shared.contracts.cache import CACHE_COMMAND_STREAM, CacheCommand
from watchllm_shared.contracts.cache_keys import CACHE_KEY_VERSION, project_of_exact_key


async def request_flush(store: AccountStore, redis: aioredis.Redis, project_name: str) -> Project:
    """Ask the cache service to drop every cached answer of a project."""
    project = await store.get_project(project_name)
    command = CacheCommand(op="flush_project", project_id=project.id)
    async with store.pool.acquire() as conn, conn.transaction():
        await audit(conn, store.actor, "cache.flush", project.id, None, {})
        await redis.xadd(CACHE_COMMAND_STREAM, {"data": command.model_dump_json()})
    return project


async def request_delete(store: AccountStore, redis: aioredis.Redis, exact_key: str) -> None:
    """Ask the cache service to drop one cached answer by its key (``x-watchllm-cache-key``)."""
    project_id = project_of_exact_key(exact_key)
    if project_id is None:
        raise InvalidInputError(
            f"a cache key looks like 'watchllm:cache:exact:v{CACHE_KEY_VERSION}:{{<project id>}}:…'"
        )
    command = CacheCommand(op="delete", exact_key=exact_key)
    async with store.pool.acquire() as conn, conn.transaction():
        await audit(conn, store.actor, "cache.delete", project_id, None, {"key": exact_key})
        await redis.xadd(CACHE_COMMAND_STREAM, {"data": command.model_dump_json()})
