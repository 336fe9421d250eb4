"""The ``analyst`` role (issue 17): a viewer who may also read logged request and answer
bodies. The role is a CHECK on ``users.role`` (0002), widened here.

Downgrading turns analysts into viewers (the role that reads less) before the CHECK
narrows again, so no user keeps access the older code would not know to limit.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE users DROP CONSTRAINT users_role_check,"
        " ADD CONSTRAINT users_role_check CHECK (role IN ('admin', 'viewer', 'analyst'))"
    )


def downgrade() -> None:
    op.execute("UPDATE users SET role = 'viewer' WHERE role = 'analyst'")
    op.execute(
        "ALTER TABLE users DROP CONSTRAINT users_role_check,"
        " ADD CONSTRAINT users_role_check CHECK (role IN ('admin', 'viewer'))"
    )
