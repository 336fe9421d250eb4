"""Alert rules (issue 16): where a webhook is called, for which project (NULL: every
project), on which kinds of alert, with the rules' options.

The secret is not stored: ``secret_env`` names the limiter's environment variable that
holds it (``watchllm_shared.accounts.alerts``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE alert_rules (
            id uuid PRIMARY KEY,
            project_id uuid REFERENCES projects (id) ON DELETE CASCADE,
            webhook_url text NOT NULL CHECK (webhook_url ~ '^https?://'),
            secret_env text,
            format text NOT NULL CHECK (format IN ('json', 'slack')),
            kinds text[] NOT NULL CHECK (cardinality(kinds) > 0),
            thresholds integer[] NOT NULL,
            error_rate_percent numeric(5, 2) NOT NULL
                CHECK (error_rate_percent > 0 AND error_rate_percent <= 100),
            error_rate_minutes integer NOT NULL
                CHECK (error_rate_minutes > 0 AND error_rate_minutes <= 1440),
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX alert_rules_project ON alert_rules (project_id)")


def downgrade() -> None:
    op.execute("DROP TABLE alert_rules")
