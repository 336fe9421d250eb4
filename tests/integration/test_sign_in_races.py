"""Dashboard sign-ins racing each other and password changes, against the real
Postgres: the lockout counts every guess, and a password change always wins."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import unique
from tests.support.pg_locks import user_row_held, user_row_locked, wait_for_lock_waiters
from watchllm_shared.accounts import AuthenticationError, Role, SessionStore, UserStore
from watchllm_shared.accounts.passwords import ScryptParams, hash_password, verify_password
from watchllm_shared.accounts.sessions import MAX_FAILED_SIGN_INS

pytestmark = pytest.mark.integration

OLD, NEW = "correct horse battery staple", "a new passphrase after a leak"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    connections = await asyncpg.create_pool(database_url, min_size=2, max_size=16)
    yield connections
    await connections.close()


async def test_a_burst_of_guesses_is_judged_five_at_a_time(pool: asyncpg.Pool) -> None:
    name = unique("victim")
    await UserStore(pool).create_user(name, OLD, Role.ADMIN)
    sessions = SessionStore(pool)
    guesses = 2 * MAX_FAILED_SIGN_INS + 1
    async with user_row_locked(pool, name):  # the burst queues up, then the right one
        wrong = [asyncio.create_task(sessions.sign_in(name, f"guess-{i}-xxxxxxxx"))
                 for i in range(guesses)]  # fmt: skip
        await wait_for_lock_waiters(pool, guesses)
        right = asyncio.create_task(sessions.sign_in(name, OLD))
        await wait_for_lock_waiters(pool, guesses + 1)
    results = await asyncio.gather(*wrong, right, return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results)  # locked by then
    assert await pool.fetchval("SELECT locked_until > now() FROM users WHERE username = $1", name)
    assert await pool.fetchval(
        "SELECT count(*) FROM dashboard_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE u.username = $1", name,
    ) == 0  # fmt: skip


async def test_a_password_change_during_a_sign_in_wins(pool: asyncpg.Pool) -> None:
    name = unique("bob")
    users, sessions = UserStore(pool), SessionStore(pool)
    await users.create_user(name, OLD, Role.VIEWER)
    # An older hash: the sign-in in flight also rewrites it (the rehash path).
    older = await asyncio.to_thread(hash_password, OLD, ScryptParams(log2_n=16))
    await pool.execute("UPDATE users SET password_hash = $2 WHERE username = $1", name, older)
    signing_in = asyncio.create_task(sessions.sign_in(name, OLD))
    deadline = time.monotonic() + 30  # bounds a failure only
    while not (signing_in.done() or await user_row_held(pool, name)):
        assert time.monotonic() < deadline, "the sign-in never read the user"
        await asyncio.sleep(0.005)
    # The sign-in has read the old hash and is checking it (then rehashing): the change
    # comes now, while it holds the row, unless that machine already finished it.
    await users.set_password(name, NEW)
    signed_in = await signing_in
    assert await sessions.session_user(signed_in.token) is None  # ended by the change
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE username = $1", name)
    assert await asyncio.to_thread(verify_password, NEW, stored)
    assert (await sessions.sign_in(name, NEW)).user.username == name
    with pytest.raises(AuthenticationError):
        await sessions.sign_in(name, OLD)


async def test_a_sign_in_deletes_sessions_that_ended_a_week_ago(pool: asyncpg.Pool) -> None:
    name = unique("tidy")
    await UserStore(pool).create_user(name, OLD, Role.VIEWER)
    user_id = await pool.fetchval("SELECT id FROM users WHERE username = $1", name)
    old, recent = (hashlib.sha256(f"{what}-{name}".encode()).digest() for what in "or")
    await pool.execute(
        "INSERT INTO dashboard_sessions (token_hash, user_id, created_at, expires_at)"
        " VALUES ($1, $2, now() - interval '9 days', now() - interval '8 days'),"
        " ($3, $2, now() - interval '2 days', now() - interval '1 day')",
        old, user_id, recent,
    )  # fmt: skip
    await SessionStore(pool).sign_in(name, OLD)
    rows = await pool.fetch("SELECT token_hash FROM dashboard_sessions WHERE user_id = $1", user_id)
    left = {row[0] for row in rows}
    assert len(left) == 2 and recent in left and old not in left  # the new one and `recent`
