"""Budgets set the way operators set limits: `watchllm projects budget NAME` and
`watchllm keys budget KEY_ID` write Postgres (audited), show in the listings, reach the
snapshot the limiter copies into Redis, and refuse bad amounts and unknown names with a
clear message, changing nothing."""

from __future__ import annotations

import asyncio
import re
import uuid

import asyncpg

from tests.conftest import unique
from tests.integration.test_cli_accounts import run
from tests.integration.test_concurrency_limits_cli import KEY_ID, limits_hash
from watchllm_shared.accounts import recent_audit


def audit_of(database_url: str, project: str) -> list[tuple[str, dict[str, object]]]:
    async def read() -> list[tuple[str, dict[str, object]]]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            project_id = await pool.fetchval("SELECT id FROM projects WHERE name = $1", project)
            entries = await recent_audit(pool, 50, project_id)
            return [(e.action, e.details) for e in entries if e.action.endswith(".budget")]
        finally:
            await pool.close()

    return asyncio.run(read())


def test_budgets_from_the_cli_reach_the_limits_hash_and_the_listings(database_url: str) -> None:
    project = unique("budget")
    run(database_url, "projects", "create", project)
    key_id = KEY_ID.search(run(database_url, "keys", "create", "--project", project)).group(1)  # type: ignore[union-attr]
    assert "daily -, monthly -" in run(database_url, "projects", "budget", project)
    shown = run(database_url, "projects", "budget", project, "--daily-usd", "12.5",
                "--monthly-usd", "300")  # fmt: skip
    assert f"project {project} budgets: daily 12.5 USD, monthly 300 USD" in shown
    shown = run(database_url, "keys", "budget", key_id, "--monthly-usd", "0.000000001")
    assert "daily -, monthly 0.000000001 USD" in shown
    fields = limits_hash(database_url, project)
    assert fields["bd"] == 12_500_000_000 and fields["bm"] == 300 * 10**9
    assert fields[f"k:{key_id}:bm"] == 1 and f"k:{key_id}:bd" not in fields
    listed = run(database_url, "projects", "list")
    assert re.search(rf"{project} .*budgets: daily 12.5 USD, monthly 300 USD", listed)
    assert "budgets: daily -, monthly 0.000000001 USD" in run(
        database_url, "keys", "list", "--project", project
    )
    # 'none' removes one; an option left out keeps its value.
    shown = run(database_url, "projects", "budget", project, "--daily-usd", "none")
    assert "daily -, monthly 300 USD" in shown and "bd" not in limits_hash(database_url, project)
    assert audit_of(database_url, project) == [
        ("project.budget", {"daily_budget_usd": None}),
        ("key.budget", {"monthly_budget_usd": "0.000000001"}),
        ("project.budget", {"daily_budget_usd": "12.5", "monthly_budget_usd": "300"}),
    ]
    rotated = run(database_url, "keys", "rotate", key_id, "--grace", "0")
    new_id = re.search(r"new key id: (\S+)", rotated).group(1)  # type: ignore[union-attr]
    assert limits_hash(database_url, project)[f"k:{new_id}:bm"] == 1  # the successor's too


def test_bad_amounts_and_unknown_names_are_refused_and_change_nothing(database_url: str) -> None:
    project = unique("budget")
    run(database_url, "projects", "create", project)
    run(database_url, "projects", "budget", project, "--daily-usd", "5")
    for bad, reason in (("-1", "cannot be negative"), ("nan", "is not a number of USD"),
                        ("inf", "is not a number of USD"), ("ten", "is not an amount of USD"),
                        ("0.0000000001", "at most 9 decimal places"),
                        ("2000000000", "at most 1,000,000,000 USD")):  # fmt: skip
        refused = run(database_url, "projects", "budget", project, "--daily-usd", bad, ok=False)
        assert reason in refused and "Traceback" not in refused, refused
    missing = run(database_url, "projects", "budget", "no-such-project", "--daily-usd", "1",
                  ok=False)  # fmt: skip
    assert "no project named 'no-such-project'" in missing
    unknown = uuid.uuid4()
    assert f"no key with id {unknown}" in run(
        database_url, "keys", "budget", str(unknown), "--daily-usd", "1", ok=False
    )
    assert "is not a key id" in run(database_url, "keys", "budget", "nope", ok=False)
    assert limits_hash(database_url, project)["bd"] == 5 * 10**9
    assert len(audit_of(database_url, project)) == 1
