"""Dashboard users: the one module that creates, lists, disables and re-enables them.

Shared by ``watchllm users …`` and the dashboard. Every change writes ``audit_log`` in
its transaction (actor: who made it; details: the username and what changed). Rules:

- usernames are case-insensitive (stored lower-case): letters, digits, ``_ . @ -``;
- passwords: at least 12 characters, stored only as a scrypt hash (``passwords``);
- roles: ``admin`` may change anything, ``viewer`` may only look (the dashboard's
  action functions enforce it, see ``require_admin``); ``analyst`` looks like a viewer
  and also reads logged request and answer bodies, which admins read too and viewers
  never (``require_body_reader``; every read is audited by the caller);
- disabling a user ends their sessions at once; the last enabled admin cannot be
  disabled (nobody could sign in to fix it);
- ``bootstrap_admin`` creates the first admin only while no user exists, so the
  bootstrap variable can stay set without ever overwriting anyone.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from watchllm_shared.accounts.audit import audit
from watchllm_shared.accounts.errors import (
    AlreadyExistsError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from watchllm_shared.accounts.passwords import check_strength, hash_password

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,62}$")
# Held while checking "no user yet" or "another admin remains", so concurrent calls
# cannot both pass the check ("WLUS" in ASCII).
_USERS_LOCK_ID = 0x574C5553


class Role(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"
    ANALYST = "analyst"  # a viewer who may also read logged bodies (issue 17)


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    username: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def reads_bodies(self) -> bool:
        """Whether the user may read logged request and answer bodies."""
        return self.role in (Role.ADMIN, Role.ANALYST)


def user_from_row(row: asyncpg.Record) -> User:
    return User(id=row["id"], username=row["username"], role=Role(row["role"]),
                created_at=row["created_at"], disabled_at=row["disabled_at"])  # fmt: skip


def normalise_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise InvalidInputError(
            f"invalid username {username!r}: use letters, digits, '_', '.', '@', '-'"
            " (at most 63 characters, starting with a letter or digit)"
        )
    return name


def require_admin(user: User) -> None:
    """Raise unless ``user`` may change things (every dashboard action calls it first)."""
    if not user.is_admin:
        raise PermissionDeniedError(
            f"{user.username} is an {user.role.value}: only admins change things"
            if user.role is Role.ANALYST
            else f"{user.username} is a viewer: viewers cannot change anything"
        )


def require_body_reader(user: User) -> None:
    """Raise unless ``user`` may read logged bodies (admins and analysts)."""
    if not user.reads_bodies:
        raise PermissionDeniedError(
            f"{user.username} is a {user.role.value}: request and answer bodies are"
            " visible to admins and analysts only"
        )


async def _password_hash(password: str) -> str:
    problem = check_strength(password)
    if problem is not None:
        raise InvalidInputError(problem)
    return await asyncio.to_thread(hash_password, password)  # ~0.6 s of scrypt


class UserStore:
    """Users. ``actor`` names who made a change, for the audit log."""

    def __init__(self, pool: asyncpg.Pool, actor: str = "cli") -> None:
        self._pool = pool
        self._actor = actor

    async def create_user(self, username: str, password: str, role: Role) -> User:
        name = normalise_username(username)
        password_hash = await _password_hash(password)
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._insert(conn, name, password_hash, role)

    async def _insert(self, conn: asyncpg.Connection, name: str, password_hash: str,
                      role: Role) -> User:  # fmt: skip
        try:
            row = await conn.fetchrow(
                "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, $3, $4)"
                " RETURNING id, username, role, created_at, disabled_at",
                uuid.uuid4(), name, password_hash, role.value,
            )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyExistsError(f"a user named {name!r} already exists") from exc
        assert row is not None
        await audit(conn, self._actor, "user.create", None, None,
                    {"username": name, "role": role.value})  # fmt: skip
        return user_from_row(row)

    async def bootstrap_admin(self, username: str, password: str) -> User | None:
        """Create ``username`` as admin if no user exists yet; else do nothing (None)."""
        name = normalise_username(username)
        if await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
            return None
        password_hash = await _password_hash(password)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _USERS_LOCK_ID)
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
                return None
            return await self._insert(conn, name, password_hash, Role.ADMIN)

    async def list_users(self) -> list[User]:
        rows = await self._pool.fetch(
            "SELECT id, username, role, created_at, disabled_at FROM users ORDER BY username"
        )
        return [user_from_row(r) for r in rows]

    async def get_user(self, username: str) -> User:
        row = await self._pool.fetchrow(
            "SELECT id, username, role, created_at, disabled_at FROM users WHERE username = $1",
            normalise_username(username),
        )
        if row is None:
            raise NotFoundError(f"no user named {username!r}")
        return user_from_row(row)

    async def disable_user(self, username: str) -> User:
        """Disable now and end every session of the user (repeating it is a no-op)."""
        name = normalise_username(username)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _USERS_LOCK_ID)
            row = await conn.fetchrow(
                "UPDATE users SET disabled_at = coalesce(disabled_at, now()) WHERE username = $1"
                " RETURNING id, username, role, created_at, disabled_at",
                name,
            )
            if row is None:
                raise NotFoundError(f"no user named {username!r}")
            remaining = await conn.fetchval(
                "SELECT count(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL"
            )
            if row["role"] == Role.ADMIN.value and remaining == 0:
                raise InvalidInputError(
                    f"{name} is the last enabled admin: create or enable another admin first"
                )
            await conn.execute(
                "UPDATE dashboard_sessions SET ended_at = now()"
                " WHERE user_id = $1 AND ended_at IS NULL",
                row["id"],
            )
            await audit(conn, self._actor, "user.disable", None, None, {"username": name})
            return user_from_row(row)

    async def enable_user(self, username: str) -> User:
        name = normalise_username(username)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE users SET disabled_at = NULL, failed_sign_ins = 0, failures_since = NULL,"
                " locked_until = NULL"
                " WHERE username = $1 RETURNING id, username, role, created_at, disabled_at",
                name,
            )
            if row is None:
                raise NotFoundError(f"no user named {username!r}")
            await audit(conn, self._actor, "user.enable", None, None, {"username": name})
            return user_from_row(row)

    async def set_password(self, username: str, password: str) -> User:
        """Replace the password and end the user's sessions (sign in again with the new one)."""
        name = normalise_username(username)
        password_hash = await _password_hash(password)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE users SET password_hash = $2, failed_sign_ins = 0, failures_since = NULL,"
                " locked_until = NULL"
                " WHERE username = $1 RETURNING id, username, role, created_at, disabled_at",
                name, password_hash,
            )  # fmt: skip
            if row is None:
                raise NotFoundError(f"no user named {username!r}")
            await conn.execute(
                "UPDATE dashboard_sessions SET ended_at = now()"
                " WHERE user_id = $1 AND ended_at IS NULL",
                row["id"],
            )
            await audit(conn, self._actor, "user.set_password", None, None, {"username": name})
            return user_from_row(row)
