"""Dashboard sign-in under attack (issue 22, finding 6), against the real Postgres: one
client's guesses never lock a user out for another client, a lock ends when it was set
to, a password check holds no lock and no connection whatever the username, and
attempts beyond the cap are refused at once without touching the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from tests.conftest import unique
from tests.support.held_checks import HeldChecks
from tests.support.pg_locks import user_row_held
from watchllm_shared.accounts import AuthenticationError, Role, SessionStore, UserStore
from watchllm_shared.accounts.passwords import (
    CURRENT,
    ScryptParams,
    hash_password,
    verify_password,
)
from watchllm_shared.accounts.sessions import LOCKOUT, USER_MAX_FAILURES
from watchllm_shared.accounts.sign_in_guard import (
    SignInBusyError,
    SignInGuard,
    SignInThrottledError,
)

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
ATTACKER, ADMIN = "203.0.113.9", "198.51.100.7"
CHEAP = ScryptParams(log2_n=10)  # a fast stored hash, for tests that make many attempts


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    connections = await asyncpg.create_pool(
        database_url, min_size=1, max_size=8
    )  # as the dashboard's
    yield connections
    await connections.close()


async def new_admin(pool: asyncpg.Pool, prefix: str, cheap: bool = True) -> str:
    name = unique(prefix)
    await UserStore(pool).create_user(name, PASSWORD, Role.ADMIN)
    if cheap:
        stored = await asyncio.to_thread(hash_password, PASSWORD, CHEAP)
        await pool.execute("UPDATE users SET password_hash = $2 WHERE username = $1", name, stored)
    return name


class CountedChecks:
    """The real check, counted: refusals that never reach it cost no scrypt."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, password: str, stored: str) -> bool:
        self.calls += 1
        return verify_password(password, stored)


def in_use(pool: asyncpg.Pool) -> int:
    return pool.get_size() - pool.get_idle_size()


async def open_transactions(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state LIKE 'idle in transaction%'"
    )
    return count


async def test_one_clients_guesses_never_lock_the_user_out_for_another(
    pool: asyncpg.Pool,
) -> None:
    name = await new_admin(pool, "admin")
    checks = CountedChecks()
    guard = SignInGuard(verify=checks)
    sessions = SessionStore(pool, guard=guard)
    for i in range(3 * USER_MAX_FAILURES):  # far more than would lock the user
        with pytest.raises(AuthenticationError) as refused:
            await sessions.sign_in(name, f"guess number {i:04d}", client=ATTACKER)
        throttled = i >= guard.client_max_failures
        assert isinstance(refused.value, SignInThrottledError) is throttled
    assert checks.calls == guard.client_max_failures  # the rest cost no scrypt
    assert "try again in 15 minutes" in str(refused.value)
    row = await pool.fetchrow(
        "SELECT failed_sign_ins, locked_until FROM users WHERE username = $1", name
    )
    assert row["locked_until"] is None and row["failed_sign_ins"] == guard.client_max_failures
    signed_in = await sessions.sign_in(name, PASSWORD, client=ADMIN)  # the admin is not locked
    assert signed_in.user.username == name


async def test_a_lock_from_many_clients_ends_when_it_was_set_to(pool: asyncpg.Pool) -> None:
    """Guesses spread over addresses lock the user for everyone, for ``LOCKOUT``; the
    guesses that keep coming during the lock neither count nor move its end."""
    name = await new_admin(pool, "spread")
    sessions = SessionStore(pool)
    for i in range(USER_MAX_FAILURES):
        with pytest.raises(AuthenticationError):
            await sessions.sign_in(name, f"guess number {i:04d}", client=f"192.0.2.{i}")
    locked_until = await pool.fetchval("SELECT locked_until FROM users WHERE username = $1", name)
    refused_at = await pool.fetchval(
        "SELECT max(at) FROM audit_log WHERE details->>'username' = $1", name
    )
    assert LOCKOUT <= locked_until - refused_at <= LOCKOUT + timedelta(seconds=5)
    for i in range(USER_MAX_FAILURES):  # more guesses, and the right password, during it
        with pytest.raises(AuthenticationError):
            await sessions.sign_in(name, f"more guesses {i:04d}", client=f"198.18.0.{i}")
    with pytest.raises(AuthenticationError):
        await sessions.sign_in(name, PASSWORD, client=ADMIN)
    row = await pool.fetchrow(
        "SELECT failed_sign_ins, locked_until FROM users WHERE username = $1", name
    )
    assert row["locked_until"] == locked_until and row["failed_sign_ins"] == 0
    await pool.execute(  # the lock's five minutes pass at once
        "UPDATE users SET locked_until = locked_until - $2::interval WHERE username = $1",
        name, LOCKOUT,
    )  # fmt: skip
    assert (await sessions.sign_in(name, PASSWORD, client=ADMIN)).user.username == name


@pytest.mark.parametrize("who", ["known", "unknown", "locked"])
async def test_a_password_check_holds_no_lock_and_no_connection(
    pool: asyncpg.Pool, who: str
) -> None:
    """While scrypt runs, whatever the username, the sign-in holds no row and no
    connection, and it checks a hash of the current cost: nothing tells a real username
    from an unknown one, and a queue of sign-ins costs nobody a connection."""
    name = await new_admin(pool, "timing", cheap=False)
    if who == "locked":
        await pool.execute(
            "UPDATE users SET locked_until = now() + interval '5 minutes' WHERE username = $1",
            name,
        )
    checks = HeldChecks()
    sessions = SessionStore(pool, guard=SignInGuard(verify=checks))
    asked = unique("nobody") if who == "unknown" else name
    signing_in = asyncio.create_task(sessions.sign_in(asked, "a wrong guess, quite long"))
    try:
        await checks.wait_for(1)
        assert in_use(pool) == 0 and await open_transactions(pool) == 0
        assert not await user_row_held(pool, name)
        assert checks.checked[0].startswith(
            f"$scrypt$ln={CURRENT.log2_n},r={CURRENT.r},p={CURRENT.p}$"
        )
    finally:
        checks.release.set()
    with pytest.raises(AuthenticationError):
        await signing_in


async def test_attempts_beyond_the_cap_are_refused_at_once_and_take_no_connection(
    pool: asyncpg.Pool,
) -> None:
    name = await new_admin(pool, "capped")
    signed_in = await SessionStore(pool).sign_in(name, PASSWORD)  # someone already in
    checks = HeldChecks()
    guard = SignInGuard(verify=checks)
    sessions = SessionStore(pool, guard=guard)
    attempts = [
        asyncio.create_task(sessions.sign_in(name, f"guess {i:04d} xxxx", client=f"192.0.2.{i}"))
        for i in range(12)
    ]
    try:
        await checks.wait_for(guard.max_concurrent)
        refused = [a for a in attempts if a.done()]  # answered before any check ended
        assert len(refused) == 12 - guard.max_concurrent
        assert all(isinstance(a.exception(), SignInBusyError) for a in refused)
        assert "too many sign-ins at once" in str(refused[0].exception())
        assert in_use(pool) == 0  # the ones checking hold no connection either
        user = await asyncio.wait_for(sessions.session_user(signed_in.token), 10)
        assert user is not None and user.username == name
    finally:
        checks.release.set()
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    assert all(isinstance(o, AuthenticationError) for o in outcomes)
    assert len(checks.checked) == guard.max_concurrent and guard.running == 0
