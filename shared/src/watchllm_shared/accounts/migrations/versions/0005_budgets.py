"""Budgets in USD per project and per key, per calendar UTC day and month (issue 16).

NULL means no budget. Nine decimal places: the limiter counts spend in whole
nano-dollars (``watchllm_shared.contracts.budgets``); at most 10^9 USD per window.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("daily_budget_usd", "monthly_budget_usd")


def upgrade() -> None:
    for table in ("project_settings", "api_keys"):
        for column in _COLUMNS:
            op.execute(
                f"ALTER TABLE {table} ADD COLUMN {column} numeric(19, 9)"
                f" CHECK ({column} >= 0 AND {column} <= 1000000000)"
            )


def downgrade() -> None:
    for table in ("api_keys", "project_settings"):
        for column in _COLUMNS:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
