"""Dashboard sign-in sessions, kept in Postgres so they expire and can be ended.

- ``sign_in`` checks the password (scrypt, constant-time; an unknown username costs the
  same time as a wrong password) and returns a random 256-bit token; Postgres keeps only
  its SHA-256. After ``MAX_FAILED_SIGN_INS`` wrong passwords in a row the user is locked
  for ``LOCKOUT``; every outcome for an existing user is written to ``audit_log``.
- ``session_user`` is called on every page view: it answers the user only while the
  session is neither ended nor expired and the user is enabled, and slides the expiry
  (``idle`` after the last view, never past ``lifetime`` after sign-in).
- A sign-in times what it writes (the session's start, a lockout's start) by the clock
  at the write, ``clock_timestamp()``, never by ``now()``: that is the transaction's
  start, before the wait for the user's row lock and the scrypt check, and a slow
  check or a queue of sign-ins would take its time out of the session or the lockout.
- ``sign_out`` ends the session; disabling a user or changing their password ends all
  of theirs (``users``). Sessions that ended or expired a week ago are deleted at each
  successful sign-in (``purge_expired``), so the table does not grow without bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from watchllm_shared.accounts.audit import audit
from watchllm_shared.accounts.errors import AuthenticationError, InvalidInputError
from watchllm_shared.accounts.passwords import (
    DUMMY_HASH,
    hash_password,
    needs_rehash,
    verify_password,
)
from watchllm_shared.accounts.users import User, normalise_username, user_from_row

MAX_FAILED_SIGN_INS = 5
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


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, policy: SessionPolicy | None = None) -> None:
        self._pool = pool
        self._policy = policy or SessionPolicy()

    async def sign_in(self, username: str, password: str) -> SignedIn:
        """A new session, or AuthenticationError (the same message whatever went wrong).

        One sign-in per user at a time: the user's row stays locked (``FOR UPDATE``) from
        reading its hash to opening the session. Without that, a burst of guesses all
        read "not locked" before any scrypt ended — every guess was judged, not five, and
        the right one cleared the lock the wrong ones had just set — and a password
        change or disable committed during the scrypt was undone by the rehash or
        outlived by the session opened with the old password. A change now waits for the
        sign-in in flight, then ends its session like every other.
        """
        try:
            name = normalise_username(username)
        except InvalidInputError:
            name = ""
        signed_in: SignedIn | None = None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, username, role, created_at, disabled_at, password_hash,"
                " locked_until > now() AS locked FROM users WHERE username = $1 FOR UPDATE",
                name,
            )
            stored = row["password_hash"] if row is not None else DUMMY_HASH
            matches = await asyncio.to_thread(verify_password, password, stored)
            if row is None:
                raise AuthenticationError(_REFUSED)
            actor = f"dashboard:{row['username']}"
            if not matches or row["locked"] or row["disabled_at"] is not None:
                await self._refuse(conn, row, actor, wrong_password=not matches)
            else:
                if needs_rehash(stored):
                    new_hash = await asyncio.to_thread(hash_password, password)
                    await conn.execute(
                        "UPDATE users SET password_hash = $2 WHERE id = $1", row["id"], new_hash
                    )
                signed_in = await self._open_session(conn, row, actor)
        if signed_in is None:  # raised after the commit: the refusal is counted and audited
            raise AuthenticationError(_REFUSED)
        # Sign-ins are rare (people), and nothing else removes old rows: tidy here.
        await self.purge_expired()
        return signed_in

    async def _refuse(
        self, conn: asyncpg.Connection, row: asyncpg.Record, actor: str, wrong_password: bool
    ) -> None:
        if wrong_password:
            await conn.execute(
                "UPDATE users SET"
                " locked_until = CASE WHEN failed_sign_ins + 1 >= $2 THEN clock_timestamp() + $3"
                " ELSE locked_until END,"
                " failed_sign_ins = CASE WHEN failed_sign_ins + 1 >= $2 THEN 0"
                " ELSE failed_sign_ins + 1 END WHERE id = $1",
                row["id"], MAX_FAILED_SIGN_INS, LOCKOUT,
            )  # fmt: skip
        reason = "wrong password" if wrong_password else (
            "disabled" if row["disabled_at"] is not None else "locked")  # fmt: skip
        await audit(conn, actor, "user.sign_in_refused", None, None,
                    {"username": row["username"], "reason": reason})  # fmt: skip

    async def _open_session(
        self, conn: asyncpg.Connection, row: asyncpg.Record, actor: str
    ) -> SignedIn:
        token = secrets.token_urlsafe(32)
        await conn.execute(
            "UPDATE users SET failed_sign_ins = 0, locked_until = NULL WHERE id = $1", row["id"]
        )
        expires_at = await conn.fetchval(
            "INSERT INTO dashboard_sessions (token_hash, user_id, created_at, last_seen_at,"
            " expires_at) SELECT $1, $2, opened, opened, opened + LEAST($3::interval, $4::interval)"
            " FROM clock_timestamp() AS opened RETURNING expires_at",
            _token_hash(token), row["id"], self._policy.idle, self._policy.lifetime,
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
            _token_hash(token), self._policy.idle, self._policy.lifetime,
        )  # fmt: skip
        return user_from_row(row) if row is not None else None

    async def sign_out(self, token: str) -> None:
        await self._pool.execute(
            "UPDATE dashboard_sessions SET ended_at = coalesce(ended_at, now())"
            " WHERE token_hash = $1",
            _token_hash(token),
        )

    async def purge_expired(self, older_than: timedelta = timedelta(days=7)) -> int:
        """Delete sessions that ended or expired more than ``older_than`` ago."""
        result: str = await self._pool.execute(
            "DELETE FROM dashboard_sessions"
            " WHERE coalesce(ended_at, expires_at) < now() - $1::interval",
            older_than,
        )
        return int(result.split()[-1])
