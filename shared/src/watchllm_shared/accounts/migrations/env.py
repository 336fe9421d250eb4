"""Alembic environment: online migrations over asyncpg, under an advisory lock."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from watchllm_shared.accounts.migrate import sqlalchemy_url

# Arbitrary constant shared by every WatchLLM migrator ("WLLM" in ASCII).
_MIGRATION_LOCK_ID = 0x574C4C4D


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
    with context.begin_transaction():
        # Held until the transaction ends: concurrent migrators queue here, then see
        # the version table already at head and do nothing.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        context.run_migrations()


async def _main() -> None:
    url = sqlalchemy_url(context.config.attributes["database_url"])
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `watchllm migrate`")
asyncio.run(_main())
