"""Alembic environment: online migrations over asyncpg, under an advisory lock."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from watchllm_shared.accounts.migrate import MIGRATION_LOCK_ID, sqlalchemy_url


def _record_applied(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """Collect what this run applied (read back by ``migrate.upgrade``)."""
    context.config.attributes.setdefault("applied", []).append(step.up_revision_id)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=None,
        transaction_per_migration=False,
        on_version_apply=_record_applied,
    )
    with context.begin_transaction():
        # Held until the transaction ends: concurrent migrators queue here, then see
        # the version table already at head and do nothing.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
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
