"""Apply the Postgres schema with alembic (revisions in ``migrations/versions``).

Runs under a Postgres advisory lock (see ``migrations/env.py``), so several replicas or
an operator and a deploy hook can run it at once: one applies, the others wait and
find nothing left to do. Every pending revision is applied in one transaction, so a
migrator killed midway (a Job's pod evicted) leaves the schema as it was.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.exc import DBAPIError

_SCRIPT_LOCATION = Path(__file__).parent / "migrations"
_CANNOT_CONNECT_NOW = "57P03"
# The advisory lock every WatchLLM migrator takes (``migrations/env.py``): an arbitrary
# constant, "WLLM" in ASCII.
MIGRATION_LOCK_ID = 0x574C4C4D


def _config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    config.attributes["database_url"] = database_url
    return config


def sqlalchemy_url(database_url: str) -> str:
    """``postgresql://…`` as SQLAlchemy's asyncpg dialect wants it."""
    scheme, _, rest = database_url.partition("://")
    if scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
        raise ValueError(f"not a postgresql:// URL: scheme {scheme!r}")
    return f"postgresql+asyncpg://{rest}"


class MigrationError(RuntimeError):
    """The schema could not be migrated; the message says why and what to do."""


def upgrade(database_url: str, revision: str = "head") -> list[str]:
    """Apply what is missing up to ``revision``; returns the revisions this call applied
    (empty when another migrator got there first or nothing was missing)."""
    config = _config(database_url)
    try:
        command.upgrade(config, revision)
    except CommandError as exc:
        hint = ""
        if "Can't locate revision" in str(exc):
            hint = (" — the database was migrated by a newer WatchLLM; run that version's"
                    " `watchllm migrate`, or restore a backup taken with this version")  # fmt: skip
        raise MigrationError(f"cannot migrate: {exc}{hint}") from exc
    except DBAPIError as exc:  # e.g. the database does not exist (OSErrors pass as is)
        if getattr(exc.orig, "sqlstate", None) == _CANNOT_CONNECT_NOW:  # starting up
            raise ConnectionError(str(exc.orig)) from exc
        raise MigrationError(f"cannot migrate: {exc.orig}") from exc
    applied: list[str] = config.attributes.get("applied", [])
    return applied


def upgrade_when_reachable(database_url: str, wait_seconds: float) -> list[str]:
    """``upgrade``, retrying a Postgres that cannot be reached yet for up to ``wait_seconds``
    (a Kubernetes Job may start before its database accepts connections)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return upgrade(database_url)
        except OSError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(1.0)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(_config(database_url), revision)


def revisions() -> list[str]:
    """Every revision this version knows, oldest first."""
    script = ScriptDirectory.from_config(_config("postgresql://unused"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config("postgresql://unused")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head
