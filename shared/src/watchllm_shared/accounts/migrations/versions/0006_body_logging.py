"""Body logging per project (issue 17): off by default; its retention in days (1 to 365,
default 30) and its redactions (named ones and regular expressions, checked by
``contracts.request_bodies.redaction_error`` before they are written).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE project_settings"
        " ADD COLUMN body_logging boolean NOT NULL DEFAULT false,"
        " ADD COLUMN body_retention_days integer NOT NULL DEFAULT 30"
        " CHECK (body_retention_days BETWEEN 1 AND 365),"
        " ADD COLUMN body_redactions text[] NOT NULL"
        " DEFAULT ARRAY['email', 'phone', 'card', 'secret']"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE project_settings DROP COLUMN body_logging,"
        " DROP COLUMN body_retention_days, DROP COLUMN body_redactions"
    )
