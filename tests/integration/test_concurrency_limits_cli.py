"""Concurrency limits set the way operators set rate limits (issue 22, finding 7):
`watchllm projects limits NAME --concurrency N` and `watchllm keys limits KEY_ID
--concurrency N` write Postgres, and the snapshot the limiter copies into Redis carries
them; a rotated key keeps its own."""

from __future__ import annotations

import asyncio
import re

import asyncpg

from tests.conftest import unique
from tests.integration.test_cli_accounts import run
from watchllm_shared.accounts import AccountStore, LimitStore

KEY_ID = re.compile(r"key id: (\S+)")


def limits_hash(database_url: str, project: str) -> dict[str, int]:
    """What the limiter service would write into Redis for ``project``."""

    async def read() -> dict[str, int]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            projects = await AccountStore(pool).list_projects()
            (project_id,) = [p.id for p in projects if p.name == project]
            return (await LimitStore(pool).project_limits(project_id)).as_hash()
        finally:
            await pool.close()

    return asyncio.run(read())


def test_concurrency_limits_from_the_cli_reach_the_limits_hash(database_url: str) -> None:
    project = unique("conc")
    run(database_url, "projects", "create", project)
    key_id = KEY_ID.search(run(database_url, "keys", "create", "--project", project)).group(1)  # type: ignore[union-attr]
    shown = run(database_url, "projects", "limits", project, "--concurrency", "12")
    assert "concurrency 12" in shown
    shown = run(database_url, "keys", "limits", key_id, "--concurrency", "3", "--rpm", "60")
    assert f"key {key_id}: rpm 60, tpm -, concurrency 3" in shown
    fields = limits_hash(database_url, project)
    assert fields["conc"] == 12 and fields[f"k:{key_id}:conc"] == 3
    assert fields[f"k:{key_id}:rpm"] == 60 and "rpm" not in fields
    # 'none' removes the project's own (the gateways' default applies again); an option
    # left out keeps its value.
    shown = run(database_url, "projects", "limits", project, "--concurrency", "none")
    assert "concurrency default" in shown and "concurrency 3" in shown
    assert "conc" not in limits_hash(database_url, project)
    refused = run(database_url, "keys", "limits", key_id, "--concurrency", "0", ok=False)
    assert "neither a positive integer nor 'none'" in refused
    rotated = run(database_url, "keys", "rotate", key_id, "--grace", "0")
    new_id = re.search(r"new key id: (\S+)", rotated).group(1)  # type: ignore[union-attr]
    after = limits_hash(database_url, project)
    assert after[f"k:{new_id}:conc"] == 3 and f"k:{key_id}:conc" not in after
