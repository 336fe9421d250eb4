"""Dashboard sign-in sessions, kept in Postgres so they expire and can be ended.

- ``sign_in`` checks the password (scrypt, constant-time) and returns a random 256-bit
  token; Postgres keeps only its SHA-256. Every attempt costs one check, whatever the
  username: an unknown one is checked against ``DUMMY_HASH`` (current parameters, as
  costly as a current user hash), a locked or disabled user's as usual. What still
  differs is a few milliseconds of writes (an existing user's refusal is counted and
  audited), against ~0.6 s of scrypt, sampled at most 10 times per address in 15
  minutes. Every outcome for an existing user is written to ``audit_log``.
- Throttling (issue 22, finding 6). A ``SignInGuard`` (``sign_in_guard``) first admits
  the attempt: per client, and at most two checks at once, refused at once otherwise.
  Then, per user: ``USER_MAX_FAILURES`` (20) wrong passwords within ``USER_WINDOW`` (15
  minutes, from the first of them) lock the user for ``LOCKOUT`` (5 minutes), for every
  client. Attempts during the lock are refused and not counted, so guesses cannot
  extend it: it ends when it was set to. The threshold is twice what one client may
  fail in a window, so one client alone never locks a user; only guesses from several
  addresses do, for five minutes at a time, each needing 20 new wrong passwords.
- No lock and no connection is held while scrypt runs: the user is read, the password
  checked, then the outcome settled in a short transaction holding the user's row
  (``FOR UPDATE``), which reads the row again. A lock set meanwhile refuses a right
  password too, and a password changed meanwhile (the hash is not the one checked)
  refuses it, uncounted, and is never overwritten by the sign-in's rehash; a user
  disabled meanwhile is refused. So a queue of sign-ins for one user costs nobody a
  connection, and a real username answers as fast as an unknown one.
- ``session_user`` is called on every page view: it answers the user only while the
  session is neither ended nor expired and the user is enabled, and slides the expiry
  (``idle`` after the last view, never past ``lifetime`` after sign-in).
- A sign-in times what it writes (the session's start, a lockout's start) by the clock
  at the write, ``clock_timestamp()``, never by ``now()``.
- ``sign_out`` ends the session; disabling a user or changing their password ends all
  of theirs (``users``). Sessions that ended or expired a week ago are deleted at each
  successful sign-in (``purge_expired``), so the table does not grow without bound.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from watchllm_shared.accounts.audit import audit
from watchllm_shared.accounts.errors import AuthenticationError, InvalidInputError
from watchllm_shared.accounts.passwords import DUMMY_HASH, needs_rehash
from watchllm_shared.accounts.sign_in_guard import SignInGuard
from watchllm_shared.accounts.users import User, normalise_username, user_from_row

USER_MAX_FAILURES = 20
USER_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=5)
_REFUSED = "wrong username or password, or the account is disabled or locked for a while"


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=30)
    lifetime: timedelta = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new session: ``token`` exists only here (the caller keeps it, Postgres its hash)."""

    token: str
    user: User
    expires_at: datetime


def token_hash_of(token: str) -> bytes:
    """What Postgres keeps of a session token (and what export links carry)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class SessionStore:
    """Sessions. ``guard`` admits sign-ins; share one per process (the dashboard's
    runtime does), or each store throttles on its own."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        policy: SessionPolicy | None = None,
        guard: SignInGuard | None = None,
    ) -> None:
        self._pool = pool
        self._policy = policy or SessionPolicy()
        self._guard = guard or SignInGuard()

    async def sign_in(self, username: str, password: str, client: str = "local") -> SignedIn:
        """A new session, or AuthenticationError: the same message whatever went wrong
        with the username or password; ``SignInThrottledError``/``SignInBusyError`` (its
        subclasses) when the attempt was not even checked. ``client`` is the address the
        attempt came from (the per-client throttle's key)."""
        try:
            name = normalise_username(username)
        except InvalidInputError:
            name = ""
        async with self._guard.attempt(client) as attempt:
            row = await self._pool.fetchrow(  # no lock: its connection returns at once
                "SELECT id, username, role, created_at, disabled_at, password_hash"
                " FROM users WHERE username = $1",
                name,
            )
            stored = row["password_hash"] if row is not None else DUMMY_HASH
            matches = await attempt.verify(password, stored)
            if row is None:
                raise AuthenticationError(_REFUSED)
            new_hash = await attempt.hash(password) if matches and needs_rehash(stored) else None
            signed_in = await self._settle(row, stored, matches, new_hash)
            if signed_in is None:  # raised after the commit: the refusal is counted
                raise AuthenticationError(_REFUSED)
            attempt.succeeded()
        # Sign-ins are rare (people), and nothing else removes old rows: tidy here.
        await self.purge_expired()
        return signed_in

    async def _settle(
        self, read: asyncpg.Record, checked: str, matches: bool, new_hash: str | None
    ) -> SignedIn | None:
        """Count, refuse or open, holding the user's row only for these few statements."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, username, role, created_at, disabled_at, password_hash,"
                " failed_sign_ins, failures_since, locked_until FROM users WHERE id = $1"
                " FOR UPDATE",
                read["id"],
            )
            if row is None:  # deleted meanwhile
                return None
            at = await conn.fetchval("SELECT clock_timestamp()")  # now that the row is ours
            actor = f"dashboard:{row['username']}"
            locked = row["locked_until"] is not None and row["locked_until"] > at
            if row["password_hash"] != checked:
                reason = "password changed during the sign-in"
            elif locked:
                reason = "locked"
            elif not matches:
                reason = "wrong password"
                await self._count_failure(conn, row, at)
            elif row["disabled_at"] is not None:
                reason = "disabled"
            else:
                if new_hash is not None:
                    await conn.execute(
                        "UPDATE users SET password_hash = $2 WHERE id = $1", row["id"], new_hash
                    )
                return await self._open_session(conn, row, actor)
            await audit(conn, actor, "user.sign_in_refused", None, None,
                        {"username": row["username"], "reason": reason})  # fmt: skip
            return None

    @staticmethod
    async def _count_failure(conn: asyncpg.Connection, row: asyncpg.Record, at: datetime) -> None:
        """One more wrong password in the user's window; the last one allowed locks."""
        since = row["failures_since"]
        in_window = since is not None and since > at - USER_WINDOW
        failures = row["failed_sign_ins"] + 1 if in_window else 1
        since = since if in_window else at
        locked_until = row["locked_until"]
        if failures >= USER_MAX_FAILURES:
            failures, since, locked_until = 0, None, at + LOCKOUT
        await conn.execute(
            "UPDATE users SET failed_sign_ins = $2, failures_since = $3, locked_until = $4"
            " WHERE id = $1",
            row["id"], failures, since, locked_until,
        )  # fmt: skip

    async def _open_session(
        self, conn: asyncpg.Connection, row: asyncpg.Record, actor: str
    ) -> SignedIn:
        token = secrets.token_urlsafe(32)
        await conn.execute(
            "UPDATE users SET failed_sign_ins = 0, failures_since = NULL, locked_until = NULL"
            " WHERE id = $1",
            row["id"],
        )
        expires_at = await conn.fetchval(
            "INSERT INTO dashboard_sessions (token_hash, user_id, created_at, last_seen_at,"
            " expires_at) SELECT $1, $2, opened, opened, opened + LEAST($3::interval, $4::interval)"
            " FROM clock_timestamp() AS opened RETURNING expires_at",
            token_hash_of(token), row["id"], self._policy.idle, self._policy.lifetime,
        )  # fmt: skip
        await audit(conn, actor, "user.sign_in", None, None, {"username": row["username"]})
        return SignedIn(token=token, user=user_from_row(row), expires_at=expires_at)

    async def session_user(self, token: str) -> User | None:
        """The signed-in user while the session is valid (and slide its expiry), else None."""
        row = await self._pool.fetchrow(
            "UPDATE dashboard_sessions s SET last_seen_at = now(),"
            " expires_at = LEAST(s.created_at + $3::interval, now() + $2::interval)"
            " FROM users u WHERE s.token_hash = $1 AND u.id = s.user_id"
            " AND s.ended_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL"
            " RETURNING u.id, u.username, u.role, u.created_at, u.disabled_at",
            token_hash_of(token), self._policy.idle, self._policy.lifetime,
        )  # fmt: skip
        return user_from_row(row) if row is not None else None

    async def live_user(self, token_hash: bytes) -> User | None:
        """The user of a session still valid, by its token's SHA-256, else None; unlike
        :meth:`session_user` its expiry is left alone (the dashboard's export links carry
        the hash, never the token, and a download is not activity on the page)."""
        row = await self._pool.fetchrow(
            "SELECT u.id, u.username, u.role, u.created_at, u.disabled_at"
            " FROM dashboard_sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now()"
            " AND u.disabled_at IS NULL",
            token_hash,
        )
        return user_from_row(row) if row is not None else None

    async def sign_out(self, token: str) -> None:
        await self._pool.execute(
            "UPDATE dashboard_sessions SET ended_at = coalesce(ended_at, now())"
            " WHERE token_hash = $1",
            token_hash_of(token),
        )

    async def purge_expired(self, older_than: timedelta = timedelta(days=7)) -> int:
        """Delete sessions that ended or expired more than ``older_than`` ago."""
        result: str = await self._pool.execute(
            "DELETE FROM dashboard_sessions"
            " WHERE coalesce(ended_at, expires_at) < now() - $1::interval",
            older_than,
        )
        return int(result.split()[-1])
