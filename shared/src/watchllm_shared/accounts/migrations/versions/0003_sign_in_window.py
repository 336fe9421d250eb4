"""Dashboard sign-in: a user's wrong passwords are counted within a window.

``failures_since`` is when the user's current run of wrong passwords began; failures
older than the window no longer count (``sessions``: one client alone can never
collect enough of them to lock a user, issue 22 finding 6).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE users ADD COLUMN failures_since timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN failures_since")
