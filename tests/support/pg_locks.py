"""Ordering concurrent Postgres work by its state, never by sleeping.

A test that needs "these sign-ins are queued before that one" holds the row they
queue for (``user_row_locked``) and waits until Postgres says they wait for it
(``wait_for_lock_waiters``); then it lets them go. One that needs "the sign-in has read
the user" waits until another session holds the row (``user_row_held``). Deadlines only
bound a failure: on a fast machine or a slow one the test goes on as soon as the state
is reached.

Counts cover the current database only: each test session has its own
(``tests.conftest.database_url``), so other sessions on the same server do not count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

WAIT_LIMIT_S = 30.0


async def lock_waiters(pool: asyncpg.Pool) -> int:
    """How many sessions of this database are waiting for a lock right now."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return count


async def wait_for_lock_waiters(pool: asyncpg.Pool, count: int) -> None:
    """Return once at least ``count`` sessions of this database wait for a lock."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while (waiting := await lock_waiters(pool)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{waiting} of {count} sessions wait for a lock")
        await asyncio.sleep(0.01)


async def user_row_held(pool: asyncpg.Pool, username: str) -> bool:
    """Whether another session holds the user's row (``FOR NO KEY UPDATE`` or more), as a
    sign-in does from reading the user to its commit. Asking takes the row for a moment
    when it is free: whoever wants it then waits that moment."""
    async with pool.acquire() as conn, conn.transaction():
        try:
            await conn.execute("SELECT FROM users WHERE username = $1 FOR UPDATE NOWAIT", username)
        except asyncpg.LockNotAvailableError:
            return True
    return False


@asynccontextmanager
async def user_row_locked(pool: asyncpg.Pool, username: str) -> AsyncIterator[asyncpg.Connection]:
    """The user's row locked ``FOR UPDATE``, as a sign-in in flight holds it, until the
    block ends: sign-ins and password changes of that user queue behind it, in order."""
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "SELECT true FROM users WHERE username = $1 FOR UPDATE", username
        )
        assert found, f"no user named {username!r}"
        yield conn
