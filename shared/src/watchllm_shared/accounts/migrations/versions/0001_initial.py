"""Organisations, projects, plans, per-project settings, API keys, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


_UPGRADE = [
    """
    CREATE TABLE plans (
        name              text PRIMARY KEY,
        requests_per_day  integer NOT NULL CHECK (requests_per_day > 0)
    )
    """,
    """
    INSERT INTO plans (name, requests_per_day) VALUES
    ('FREE', 1000), ('STARTER', 10000), ('PRO', 100000)
    """,
    """
    CREATE TABLE organisations (
        id          uuid PRIMARY KEY,
        name        text NOT NULL UNIQUE,
        created_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE projects (
        id               uuid PRIMARY KEY,
        organisation_id  uuid NOT NULL REFERENCES organisations (id),
        name             text NOT NULL UNIQUE
                         CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
        plan             text NOT NULL REFERENCES plans (name),
        created_at       timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE project_settings (
        project_id                  uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
        cache_enabled               boolean NOT NULL DEFAULT true,
        cache_mode                  text NOT NULL DEFAULT 'semantic'
                                    CHECK (cache_mode IN ('exact', 'semantic')),
        cache_similarity_threshold  real CHECK (cache_similarity_threshold BETWEEN 0 AND 1),
        cache_ttl_seconds           integer NOT NULL DEFAULT 86400
                                    CHECK (cache_ttl_seconds > 0),
        allowed_models              text[],
        rpm_limit                   integer CHECK (rpm_limit > 0),
        tpm_limit                   integer CHECK (tpm_limit > 0),
        updated_at                  timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE api_keys (
        id              uuid PRIMARY KEY,
        project_id      uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
        name            text,
        key_hash        bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
        display_prefix  text NOT NULL,
        created_at      timestamptz NOT NULL DEFAULT now(),
        revoked_at      timestamptz,
        expires_at      timestamptz,
        replaced_by     uuid REFERENCES api_keys (id),
        rpm_limit       integer CHECK (rpm_limit > 0),
        tpm_limit       integer CHECK (tpm_limit > 0)
    )
    """,
    """
    CREATE INDEX api_keys_project_idx ON api_keys (project_id)
    """,
    """
    CREATE TABLE audit_log (
        id          bigserial PRIMARY KEY,
        at          timestamptz NOT NULL DEFAULT now(),
        actor       text NOT NULL,
        action      text NOT NULL,
        project_id  uuid,
        key_id      uuid,
        details     jsonb NOT NULL DEFAULT '{}'::jsonb
    )
    """,
    """
    CREATE INDEX audit_log_project_at_idx ON audit_log (project_id, at)
    """,
]

_DOWNGRADE = [
    """
    DROP TABLE audit_log
    """,
    """
    DROP TABLE api_keys
    """,
    """
    DROP TABLE project_settings
    """,
    """
    DROP TABLE projects
    """,
    """
    DROP TABLE organisations
    """,
    """
    DROP TABLE plans
    """,
]


# asyncpg runs one statement per call, hence lists rather than one script.
def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
