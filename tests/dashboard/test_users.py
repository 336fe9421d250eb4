"""Dashboard users and sessions in the shared accounts module, against the real Postgres:
password hashes, roles, sign-in, expiry, lockout, disabling, the audit log, and the
`watchllm users` commands."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest
from click.testing import CliRunner

from tests.conftest import unique
from tests.dashboard.conftest import PASSWORD
from tests.support.pg_locks import user_row_locked, wait_for_lock_waiters
from tests.support.servers import fresh_database
from watchllm_shared.accounts import (
    AccountStore,
    AlreadyExistsError,
    AuthenticationError,
    InvalidInputError,
    PermissionDeniedError,
    Role,
    SessionPolicy,
    SessionStore,
    UserStore,
    require_admin,
)
from watchllm_shared.accounts import migrate as migrations
from watchllm_shared.accounts.passwords import (
    ScryptParams,
    hash_password,
    needs_rehash,
    verify_password,
)
from watchllm_shared.accounts.sessions import LOCKOUT, USER_MAX_FAILURES
from watchllm_shared.cli.main import cli

pytestmark = pytest.mark.integration


async def audit_actions(pool: asyncpg.Pool, username: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT actor, action FROM audit_log WHERE details->>'username' = $1 ORDER BY id",
        username,
    )
    return [(r["actor"], r["action"]) for r in rows]


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def turn_back_clock(pool: asyncpg.Pool, token: str, by: timedelta) -> None:
    """As if ``by`` had passed since the session's last event: its times move that far
    into the past. Minutes pass at once, and no sleep races the wall clock."""
    await pool.execute(
        "UPDATE dashboard_sessions SET created_at = created_at - $2::interval,"
        " last_seen_at = last_seen_at - $2::interval, expires_at = expires_at - $2::interval"
        " WHERE token_hash = $1",
        token_hash(token), by,
    )  # fmt: skip


def test_password_hashes_are_salted_scrypt_with_their_parameters() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first.startswith("$scrypt$ln=17,r=8,p=1$") and first != second
    assert verify_password(PASSWORD, first) and not verify_password(PASSWORD + "!", first)
    assert PASSWORD not in first and not needs_rehash(first)
    weaker = hash_password(PASSWORD, ScryptParams(log2_n=14))
    assert verify_password(PASSWORD, weaker) and needs_rehash(weaker)
    assert not verify_password(PASSWORD, "$scrypt$ln=99,r=8,p=1$AAAA$AAAA")


async def test_users_are_created_listed_and_audited(account_store: AccountStore) -> None:
    users = UserStore(account_store.pool, actor="dashboard:someone")
    name = unique("Ana")
    user = await users.create_user(name, PASSWORD, Role.VIEWER)
    assert user.username == name.lower() and user.role is Role.VIEWER
    assert user.username in {u.username for u in await users.list_users()}
    stored = await account_store.pool.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", user.id
    )
    assert stored.startswith("$scrypt$") and PASSWORD not in stored
    assert await audit_actions(account_store.pool, user.username) == [
        ("dashboard:someone", "user.create")
    ]
    with pytest.raises(AlreadyExistsError):
        await users.create_user(name.upper(), PASSWORD, Role.ADMIN)
    with pytest.raises(InvalidInputError, match="at least 12"):
        await users.create_user(unique("short"), "2short", Role.ADMIN)
    with pytest.raises(InvalidInputError, match="invalid username"):
        await users.create_user("no spaces allowed", PASSWORD, Role.ADMIN)
    with pytest.raises(PermissionDeniedError):
        require_admin(user)


async def test_sign_in_session_sign_out(account_store: AccountStore) -> None:
    users, sessions = UserStore(account_store.pool), SessionStore(account_store.pool)
    name = unique("bo")
    await users.create_user(name, PASSWORD, Role.ADMIN)
    signed_in = await sessions.sign_in(name.upper(), PASSWORD)
    assert (await sessions.session_user(signed_in.token)).username == name  # type: ignore[union-attr]
    assert await sessions.session_user(signed_in.token + "x") is None
    kept = await account_store.pool.fetch(
        "SELECT token_hash FROM dashboard_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE u.username = $1",
        name,
    )
    assert [bytes(r["token_hash"]) for r in kept] == [token_hash(signed_in.token)]  # no token
    await sessions.sign_out(signed_in.token)
    assert await sessions.session_user(signed_in.token) is None
    for wrong in ((name, PASSWORD + "x"), (unique("nobody"), PASSWORD), ("", "")):
        with pytest.raises(AuthenticationError):
            await sessions.sign_in(*wrong)
    assert [a for _, a in await audit_actions(account_store.pool, name)] == [
        "user.create",
        "user.sign_in",
        "user.sign_in_refused",
    ]


async def test_sessions_expire_when_idle_and_at_their_lifetime(
    account_store: AccountStore,
) -> None:
    pool = account_store.pool
    name = unique("cy")
    await UserStore(pool).create_user(name, PASSWORD, Role.VIEWER)
    policy = SessionPolicy(idle=timedelta(minutes=30), lifetime=timedelta(hours=1))
    sessions = SessionStore(pool, policy)
    idle = await sessions.sign_in(name, PASSWORD)
    for _ in range(2):  # each view slides the expiry: 40 minutes in, it is still open
        await turn_back_clock(pool, idle.token, timedelta(minutes=20))
        assert await sessions.session_user(idle.token) is not None
    await turn_back_clock(pool, idle.token, timedelta(minutes=31))
    assert await sessions.session_user(idle.token) is None  # 31 minutes without a view
    busy = await sessions.sign_in(name, PASSWORD)
    for _ in range(2):
        await turn_back_clock(pool, busy.token, timedelta(minutes=25))
        assert await sessions.session_user(busy.token) is not None
    row = await pool.fetchrow(
        "SELECT created_at, expires_at FROM dashboard_sessions WHERE token_hash = $1",
        token_hash(busy.token),
    )
    assert row["expires_at"] == row["created_at"] + policy.lifetime  # not 30 min from now
    await turn_back_clock(pool, busy.token, timedelta(minutes=11))
    assert await sessions.session_user(busy.token) is None  # an hour in, 11 minutes idle


async def test_a_session_is_timed_from_its_opening_not_from_the_sign_in_start(
    account_store: AccountStore,
) -> None:
    """A sign-in queued behind another one (the user's row lock), then checking the
    password, loses none of its session to either: it opens after both, so its idle
    time and lifetime start then. The lock makes the wait certain, on any machine."""
    pool = account_store.pool
    name = unique("cyd")
    await UserStore(pool).create_user(name, PASSWORD, Role.VIEWER)
    policy = SessionPolicy(idle=timedelta(minutes=30), lifetime=timedelta(hours=1))
    async with user_row_locked(pool, name) as holder:
        signing_in = asyncio.create_task(SessionStore(pool, policy).sign_in(name, PASSWORD))
        await wait_for_lock_waiters(pool, 1)  # its transaction began; it waits for the row
        released_at = await holder.fetchval("SELECT clock_timestamp()")
    signed_in = await signing_in
    row = await pool.fetchrow(
        "SELECT created_at, last_seen_at, expires_at FROM dashboard_sessions WHERE token_hash = $1",
        token_hash(signed_in.token),
    )
    assert row["created_at"] > released_at
    assert row["last_seen_at"] == row["created_at"]
    assert signed_in.expires_at == row["expires_at"] == row["created_at"] + policy.idle


async def test_a_lockout_is_timed_from_the_refusal_not_from_the_sign_in_start(
    account_store: AccountStore,
) -> None:
    pool = account_store.pool
    name = unique("cye")
    await UserStore(pool).create_user(name, PASSWORD, Role.VIEWER)
    await pool.execute(
        "UPDATE users SET failed_sign_ins = $2, failures_since = now() WHERE username = $1",
        name, USER_MAX_FAILURES - 1,
    )  # fmt: skip
    async with user_row_locked(pool, name) as holder:
        guessing = asyncio.create_task(SessionStore(pool).sign_in(name, "a wrong guess, the last"))
        await wait_for_lock_waiters(pool, 1)
        released_at = await holder.fetchval("SELECT clock_timestamp()")
    with pytest.raises(AuthenticationError):
        await guessing
    locked_until = await pool.fetchval("SELECT locked_until FROM users WHERE username = $1", name)
    assert locked_until > released_at + LOCKOUT


@pytest.mark.slow
async def test_repeated_wrong_passwords_lock_the_account(account_store: AccountStore) -> None:
    users, sessions = UserStore(account_store.pool), SessionStore(account_store.pool)
    name = unique("dee")
    await users.create_user(name, PASSWORD, Role.VIEWER)
    # A cheap hash (ln=10) in its place: each refusal checks the stored hash's scrypt,
    # 20 × ~0.35 s at the real cost; what is tested is the count, not the cost.
    await account_store.pool.execute(
        "UPDATE users SET password_hash = $1 WHERE username = $2",
        hash_password(PASSWORD, ScryptParams(log2_n=10)), name,
    )  # fmt: skip
    for i in range(USER_MAX_FAILURES):  # from several addresses: one alone is throttled first
        with pytest.raises(AuthenticationError):
            await sessions.sign_in(name, "not the password at all", client=f"192.0.2.{i % 3}")
    with pytest.raises(AuthenticationError):  # locked: even the right password is refused
        await sessions.sign_in(name, PASSWORD, client="198.51.100.7")
    await users.enable_user(name)  # an admin lifts the lock
    assert (await sessions.sign_in(name, PASSWORD, client="198.51.100.7")).user.username == name


async def test_disabling_ends_sessions_and_refuses_sign_in(account_store: AccountStore) -> None:
    users, sessions = UserStore(account_store.pool, actor="cli"), SessionStore(account_store.pool)
    name = unique("ed")
    await users.create_user(name, PASSWORD, Role.ADMIN)
    signed_in = await sessions.sign_in(name, PASSWORD)
    await users.disable_user(name)
    assert await sessions.session_user(signed_in.token) is None
    with pytest.raises(AuthenticationError):
        await sessions.sign_in(name, PASSWORD)
    await users.enable_user(name)
    new_password = PASSWORD + " two"
    signed_in = await sessions.sign_in(name, PASSWORD)
    await users.set_password(name, new_password)  # ends sessions too
    assert await sessions.session_user(signed_in.token) is None
    assert (await sessions.sign_in(name, new_password)).user.username == name
    assert ("cli", "user.disable") in await audit_actions(account_store.pool, name)


@pytest.fixture
def empty_database(postgres_admin_url: str) -> Iterator[str]:
    with fresh_database(postgres_admin_url, "watchllm_users") as url:
        migrations.upgrade(url)
        yield url


async def test_bootstrap_admin_only_on_an_empty_table_and_the_last_admin_stays(
    empty_database: str,
) -> None:
    pool = await asyncpg.create_pool(empty_database, min_size=1, max_size=4)
    try:
        users = UserStore(pool, actor="bootstrap")
        created = await asyncio.gather(*(users.bootstrap_admin("root", PASSWORD) for _ in range(3)))
        assert sum(u is not None for u in created) == 1  # concurrent starts: one admin
        assert await users.bootstrap_admin("other", PASSWORD) is None
        assert [(u.username, u.role) for u in await users.list_users()] == [("root", Role.ADMIN)]
        with pytest.raises(InvalidInputError, match="last enabled admin"):
            await users.disable_user("root")
        await users.create_user("second", PASSWORD, Role.ADMIN)
        await users.disable_user("root")
        assert (await users.get_user("root")).disabled_at is not None
    finally:
        await pool.close()


def run_cli(database_url: str, *args: str, stdin: str | None = None, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, list(args), input=stdin, env={"DATABASE_URL": database_url})
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def test_users_cli(database_url: str) -> None:
    name = unique("cli-user")
    for command in ("", "create", "list", "disable", "enable", "set-password"):
        assert "Usage:" in run_cli(database_url, "users", *command.split(), "--help")
    out = run_cli(
        database_url, "users", "create", name, "--admin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert f"created admin {name}" in out
    prompted = unique("prompted")
    out = run_cli(
        database_url, "users", "create", prompted, "--viewer", stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert f"created viewer {prompted}" in out
    analyst = unique("analyst")
    out = run_cli(database_url, "users", "create", analyst, "--analyst", "--password-stdin",
                  stdin=PASSWORD + "\n")  # fmt: skip
    assert f"created analyst {analyst}" in out
    listing = run_cli(database_url, "users", "list")
    assert name in listing and prompted in listing and PASSWORD not in listing
    assert "say --admin, --viewer or --analyst" in run_cli(
        database_url, "users", "create", unique("x"), "--password-stdin", stdin=PASSWORD, ok=False
    )
    assert "at least 12" in run_cli(
        database_url,
        "users",
        "create",
        unique("x"),
        "--viewer",
        "--password-stdin",
        stdin="short\n",
        ok=False,
    )
    assert f"disabled {prompted}" in run_cli(database_url, "users", "disable", prompted)
    assert (
        "disabled"
        in [
            line for line in run_cli(database_url, "users", "list").splitlines() if prompted in line
        ][0]
    )
    assert f"enabled {prompted}" in run_cli(database_url, "users", "enable", prompted)
    assert "no user named" in run_cli(database_url, "users", "disable", "nobody-x", ok=False)
    run_cli(
        database_url, "users", "set-password", prompted, "--password-stdin", stdin=PASSWORD + "2\n"
    )
