"""Apply the Postgres schema with alembic (revisions in ``migrations/versions``).

Runs under a Postgres advisory lock (see ``migrations/env.py``), so several replicas or
an operator and a deploy hook can run it at once: one applies, the others wait and
find nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

_SCRIPT_LOCATION = Path(__file__).parent / "migrations"


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


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(_config(database_url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config("postgresql://unused")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head
