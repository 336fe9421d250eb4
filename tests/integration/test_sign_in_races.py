"""Dashboard sign-ins racing each other and password changes, against the real
Postgres: the lockout counts every guess, and a password change always wins."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import unique
from tests.support.held_checks import HeldChecks
from tests.support.pg_locks import user_row_locked, wait_for_lock_waiters
from watchllm_shared.accounts import AuthenticationError, Role, SessionStore, UserStore
from watchllm_shared.accounts.passwords import ScryptParams, hash_password, verify_password
from watchllm_shared.accounts.sessions import USER_MAX_FAILURES
from watchllm_shared.accounts.sign_in_guard import SignInGuard

pytestmark = pytest.mark.integration

OLD, NEW = "correct horse battery staple", "a new passphrase after a leak"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    connections = await asyncpg.create_pool(database_url, min_size=2, max_size=16)
    yield connections
    await connections.close()


async def test_a_burst_of_guesses_is_counted_and_a_right_one_checked_meanwhile_refused(
    pool: asyncpg.Pool,
) -> None:
    """Guesses checked at once (from several addresses) each count when they settle, in
    turn on the user's row; the right password, read as "not locked" before the burst
    and checked while it locked the user, is refused and does not clear the lock."""
    name = unique("victim")
    await UserStore(pool).create_user(name, OLD, Role.ADMIN)
    cheap = await asyncio.to_thread(hash_password, OLD, ScryptParams(log2_n=10))
    guesses = 5
    await pool.execute(  # the window already holds all but the burst's wrong passwords
        "UPDATE users SET password_hash = $2, failed_sign_ins = $3, failures_since = now()"
        " WHERE username = $1",
        name, cheap, USER_MAX_FAILURES - guesses,
    )  # fmt: skip
    checks = HeldChecks()
    right = asyncio.create_task(
        SessionStore(pool, guard=SignInGuard(verify=checks)).sign_in(name, OLD, "198.51.100.7")
    )
    try:
        await checks.wait_for(1)  # it read the user unlocked and is checking the password
        burst = SessionStore(pool, guard=SignInGuard(max_concurrent=guesses))
        async with user_row_locked(pool, name):  # every guess checked before any settles
            wrong = [asyncio.create_task(burst.sign_in(name, f"guess-{i}-xxxxxxxx", f"192.0.2.{i}"))
                     for i in range(guesses)]  # fmt: skip
            await wait_for_lock_waiters(pool, guesses)
        results = await asyncio.gather(*wrong, return_exceptions=True)
    finally:
        checks.release.set()
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert await pool.fetchval("SELECT locked_until > now() FROM users WHERE username = $1", name)
    with pytest.raises(AuthenticationError):
        await right
    assert await pool.fetchval("SELECT locked_until > now() FROM users WHERE username = $1", name)
    reasons = await pool.fetch(
        "SELECT details->>'reason' FROM audit_log WHERE details->>'username' = $1"
        " AND action = 'user.sign_in_refused' ORDER BY id", name,
    )  # fmt: skip
    assert [r[0] for r in reasons] == ["wrong password"] * guesses + ["locked"]
    assert await pool.fetchval(
        "SELECT count(*) FROM dashboard_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE u.username = $1", name,
    ) == 0  # fmt: skip


async def test_a_password_change_during_a_sign_in_wins(pool: asyncpg.Pool) -> None:
    """The change does not wait for the check in flight (it holds nothing), and the
    sign-in, which checked the old hash, is refused and does not write its rehash."""
    name = unique("bob")
    users = UserStore(pool)
    await users.create_user(name, OLD, Role.VIEWER)
    # An older hash: the sign-in in flight would also rewrite it (the rehash path).
    older = await asyncio.to_thread(hash_password, OLD, ScryptParams(log2_n=16))
    await pool.execute("UPDATE users SET password_hash = $2 WHERE username = $1", name, older)
    checks = HeldChecks()
    sessions = SessionStore(pool, guard=SignInGuard(verify=checks))
    signing_in = asyncio.create_task(sessions.sign_in(name, OLD))
    try:
        await checks.wait_for(1)  # it has read the old hash and is checking it
        await asyncio.wait_for(users.set_password(name, NEW), 20)
    finally:
        checks.release.set()
    with pytest.raises(AuthenticationError):
        await signing_in
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
