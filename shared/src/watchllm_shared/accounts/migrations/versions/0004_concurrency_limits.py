"""Concurrency limits: requests in flight at once, per project and per key (issue 22,
finding 7: one tenant's slow streams held every upstream connection).

NULL means no limit of this project's own (the gateways' default per-project limit
applies) or of this key's own.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE project_settings ADD COLUMN concurrency_limit integer"
        " CHECK (concurrency_limit > 0)"
    )
    op.execute(
        "ALTER TABLE api_keys ADD COLUMN concurrency_limit integer CHECK (concurrency_limit > 0)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE api_keys DROP COLUMN concurrency_limit")
    op.execute("ALTER TABLE project_settings DROP COLUMN concurrency_limit")
