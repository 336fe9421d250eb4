"""Body logging set the way operators set budgets: `watchllm projects logging NAME`
writes Postgres (audited), reaches the gateway's key grant, and refuses a bad regular
expression, a retention out of range and an unknown project, changing nothing."""

from __future__ import annotations

import asyncio
import re

import asyncpg

from tests.conftest import unique
from tests.integration.test_cli_accounts import run
from watchllm_shared.accounts import AccountStore, BodyLogging, recent_audit
from watchllm_shared.accounts.keys import hash_key

KEY = re.compile(r"(lgw_\S+)")


def grant_and_audit(database_url: str, project: str, key: str) -> tuple[BodyLogging, list]:  # type: ignore[type-arg]
    async def read() -> tuple[BodyLogging, list]:  # type: ignore[type-arg]
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            grant = await AccountStore(pool).find_grant(hash_key(key))
            assert grant is not None
            entries = await recent_audit(pool, 50, grant.project_id)
            audited = [e.details for e in entries if e.action == "project.body_logging"]
            return grant.bodies, audited
        finally:
            await pool.close()

    return asyncio.run(read())


def test_logging_from_the_cli_reaches_the_key_grant_audited(database_url: str) -> None:
    project = unique("bodies")
    run(database_url, "projects", "create", project)
    key = KEY.search(run(database_url, "keys", "create", "--project", project)).group(1)  # type: ignore[union-attr]
    assert grant_and_audit(database_url, project, key) == (BodyLogging(), [])  # off by default
    shown = run(database_url, "projects", "logging", project, "--bodies", "on", "--retention-days",
                "7", "--redact", "email,card", "--redact", r"ACCT-\d{4,8}")  # fmt: skip
    assert f"project {project}: bodies on, retention 7 days, redact email,card,ACCT-" in shown
    bodies, audited = grant_and_audit(database_url, project, key)
    assert bodies == BodyLogging(True, 7, ("email", "card", r"ACCT-\d{4,8}"))
    assert audited == [{"enabled": True, "retention_days": 7,
                        "redactions": ["email", "card", r"ACCT-\d{4,8}"]}]  # fmt: skip
    # Refused before anything changes: a bad regex, a retention out of range, no project.
    for args, reason in (
        (["--redact", "(unclosed"], "'(unclosed' is not a valid regular expression"),
        (["--retention-days", "0"], "0 is not in the range 1<=x<=365"),
        (["--retention-days", "366"], "366 is not in the range 1<=x<=365"),
    ):
        refused = run(database_url, "projects", "logging", project, "--bodies", "off", *args,
                      ok=False)  # fmt: skip
        assert reason in refused and "Traceback" not in refused, refused
    missing = run(database_url, "projects", "logging", "no-such-project", "--bodies", "on",
                  ok=False)  # fmt: skip
    assert "no project named 'no-such-project'" in missing
    assert grant_and_audit(database_url, project, key)[0].enabled is True
    shown = run(database_url, "projects", "logging", project, "--bodies", "off",
                "--redact", "none")  # fmt: skip
    assert "bodies off, retention 7 days, redact - (secrets always)" in shown
    assert grant_and_audit(database_url, project, key)[0] == BodyLogging(False, 7, ())
