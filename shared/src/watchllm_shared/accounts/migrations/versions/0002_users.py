"""Dashboard users and their sign-in sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


_UPGRADE = [
    """
    CREATE TABLE users (
        id               uuid PRIMARY KEY,
        username         text NOT NULL UNIQUE
                         CHECK (username ~ '^[a-z0-9][a-z0-9_.@-]{0,62}$'),
        password_hash    text NOT NULL,
        role             text NOT NULL CHECK (role IN ('admin', 'viewer')),
        created_at       timestamptz NOT NULL DEFAULT now(),
        disabled_at      timestamptz,
        failed_sign_ins  integer NOT NULL DEFAULT 0,
        locked_until     timestamptz
    )
    """,
    """
    CREATE TABLE dashboard_sessions (
        token_hash    bytea PRIMARY KEY CHECK (length(token_hash) = 32),
        user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at    timestamptz NOT NULL DEFAULT now(),
        last_seen_at  timestamptz NOT NULL DEFAULT now(),
        expires_at    timestamptz NOT NULL,
        ended_at      timestamptz
    )
    """,
    """
    CREATE INDEX dashboard_sessions_user_idx ON dashboard_sessions (user_id)
    """,
    """
    CREATE INDEX dashboard_sessions_expires_idx ON dashboard_sessions (expires_at)
    """,
    """
    CREATE INDEX audit_log_at_idx ON audit_log (at)
    """,
]

_DOWNGRADE = [
    """
    DROP INDEX audit_log_at_idx
    """,
    """
    DROP TABLE dashboard_sessions
    """,
    """
    DROP TABLE users
    """,
]


# asyncpg runs one statement per call, hence lists rather than one script.
def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
