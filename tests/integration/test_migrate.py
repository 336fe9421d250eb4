"""`watchllm migrate` as a Kubernetes Job runs it: several at once, repeated, against a
database another version migrated. Real processes, real Postgres."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner, Result

from tests.support.servers import fresh_database
from watchllm_shared.accounts import migrate as migrations
from watchllm_shared.cli.main import cli

pytestmark = pytest.mark.integration

WATCHLLM = str(Path(sys.executable).with_name("watchllm"))


@pytest.fixture
def empty_database(postgres_admin_url: str) -> Iterator[str]:
    with fresh_database(postgres_admin_url, "watchllm_migrate") as url:
        yield url


def start_migrate(database_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.Popen([WATCHLLM, "migrate"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def migrate_in_process(database_url: str) -> Result:
    return CliRunner().invoke(cli, ["migrate"], env={"DATABASE_URL": database_url})


async def waiting_for_lock(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND objid = $1", migrations.MIGRATION_LOCK_ID,
    ))  # fmt: skip


async def test_concurrent_migrations_apply_once_and_a_rerun_is_a_no_op(empty_database: str) -> None:
    # Hold the migrators' lock so both processes are certainly running at once, queued.
    holder = await asyncpg.connect(empty_database)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", migrations.MIGRATION_LOCK_ID)
        racers = [start_migrate(empty_database) for _ in range(2)]
        deadline = time.monotonic() + 30
        while await waiting_for_lock(holder) < 2:
            assert time.monotonic() < deadline, [r.poll() for r in racers]
            await asyncio.sleep(0.05)
        await holder.execute("SELECT pg_advisory_unlock($1)", migrations.MIGRATION_LOCK_ID)
        results = await asyncio.gather(*(asyncio.to_thread(r.communicate, None, 60)
                                         for r in racers))  # fmt: skip
        assert [r.returncode for r in racers] == [0, 0], results
        outputs = sorted(out.strip() for out, _ in results)
        head = migrations.head_revision()
        assert outputs == [
            f"applied {', '.join(migrations.revisions())}; schema at revision {head}",
            f"schema already at revision {head}; nothing to do",
        ]
        tables_before = await holder.fetch("SELECT oid, relname FROM pg_class WHERE relkind = 'r'")
        third = await asyncio.to_thread(migrate_in_process, empty_database)
        assert third.exit_code == 0, third.output
        assert third.stdout.strip() == f"schema already at revision {head}; nothing to do"
        assert await holder.fetchval("SELECT version_num FROM alembic_version") == head
        assert (
            await holder.fetch("SELECT oid, relname FROM pg_class WHERE relkind = 'r'")
            == tables_before
        )
    finally:
        await holder.close()


async def test_a_database_from_a_newer_version_is_refused_clearly(empty_database: str) -> None:
    await asyncio.to_thread(migrations.upgrade, empty_database)
    connection = await asyncpg.connect(empty_database)
    try:
        await connection.execute("UPDATE alembic_version SET version_num = '9999'")
    finally:
        await connection.close()
    done = await asyncio.to_thread(migrate_in_process, empty_database)
    assert done.exit_code == 1
    assert "Can't locate revision identified by '9999'" in done.output
    assert "migrated by a newer WatchLLM" in done.output and "Traceback" not in done.output
