"""`watchllm alerts add|list|remove|test` against the real Postgres and Redis: rules are
stored and audited without their secret or their URL's path; a webhook that is not
http(s), an unknown kind, a bad option or an unknown project is refused with a clear
message and changes nothing; `test` queues a test alert on the stream the limiter
delivers from."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import pytest
import redis
from click.testing import CliRunner

from tests.conftest import unique
from tests.integration.test_cli_accounts import run
from watchllm_shared.accounts import recent_audit
from watchllm_shared.cli.main import cli
from watchllm_shared.contracts.alerts import ALERTS_STREAM, Alert

pytestmark = pytest.mark.integration

RULE_ID = re.compile(r"added alert rule (\S+):")


def rules_and_audit(database_url: str, project: str) -> tuple[int, list[tuple[str, Any]]]:
    async def read() -> tuple[int, list[tuple[str, Any]]]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            project_id = await pool.fetchval("SELECT id FROM projects WHERE name = $1", project)
            count = await pool.fetchval(
                "SELECT count(*) FROM alert_rules WHERE project_id = $1", project_id
            )
            entries = await recent_audit(pool, 50, project_id)
            return count, [(e.action, e.details) for e in entries if e.action.startswith("alert")]
        finally:
            await pool.close()

    return asyncio.run(read())


def test_rules_are_added_listed_and_removed_audited_without_secrets(database_url: str) -> None:
    project = unique("alerts")
    run(database_url, "projects", "create", project)
    added = run(database_url, "alerts", "add", "--webhook", "https://hooks.example.com/T0/B0/XyZ",
                "--project", project, "--secret-env", "ALERT_SECRET", "--format", "slack",
                "--on", "budget,error-rate", "--thresholds", "80,50",
                "--error-rate-percent", "12.5", "--error-rate-minutes", "10")  # fmt: skip
    rule_id = RULE_ID.search(added).group(1)  # type: ignore[union-attr]
    listed = run(database_url, "alerts", "list", "--project", project)
    assert f"{rule_id}  {project}" in listed and "budget,error-rate" in listed
    assert "https://hooks.example.com slack, signed with $ALERT_SECRET" in listed
    assert "thresholds 50,80 %; error rate > 12.5 % for 10 min" in listed
    assert "XyZ" not in listed  # a webhook's path is often its secret
    assert f"removed alert rule {rule_id}" in run(database_url, "alerts", "remove", rule_id)
    assert rule_id not in run(database_url, "alerts", "list")
    count, audit = rules_and_audit(database_url, project)
    assert count == 0 and [action for action, _ in audit] == ["alert.remove", "alert.add"]
    assert audit[1][1]["target"] == "https://hooks.example.com" and audit[1][1]["signed"]
    assert "XyZ" not in str(audit) and "ALERT_SECRET" not in str(audit)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--webhook", "ftp://hooks.example.com/x"], "must start with http:// or https://"),
        (["--webhook", "javascript:alert(1)"], "must start with http:// or https://"),
        (["--webhook", "https:///no-host"], "needs a host"),
        (["--on", "budget,weather"], "unknown kind weather"),
        (["--thresholds", "50,eighty"], "whole percentages"),
        (["--thresholds", "0"], "thresholds: whole percentages from 1 to 1000"),
        (["--error-rate-percent", "150"], "above 0 and at most 100"),
        (["--secret-env", "NOT A NAME"], "is not an environment variable name"),
        (["--project", "no-such-project"], "no project named 'no-such-project'"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)
def test_bad_rules_are_refused_and_change_nothing(
    database_url: str, args: list[str], reason: str
) -> None:
    options = {"--webhook": "https://hooks.example.com/x", "--on": "budget"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        options[flag] = value
    before = run(database_url, "alerts", "list")
    refused = run(database_url, "alerts", "add", *[x for kv in options.items() for x in kv],
                  ok=False)  # fmt: skip
    assert reason in refused and "Traceback" not in refused, refused
    assert run(database_url, "alerts", "list") == before


def test_test_queues_a_test_alert_for_the_limiter(database_url: str, redis_url: str) -> None:
    project = unique("alerts")
    run(database_url, "projects", "create", project)
    added = run(database_url, "alerts", "add", "--webhook", "http://127.0.0.1:9/hook",
                "--project", project, "--on", "dead-letters")  # fmt: skip
    rule_id = RULE_ID.search(added).group(1)  # type: ignore[union-attr]
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    result = CliRunner().invoke(cli, ["alerts", "test", rule_id, "--wait", "0"], env=env)
    assert result.exit_code == 0, result.output
    alert_id = re.search(r"queued test alert (\S+) for http://127.0.0.1:9", result.output)
    client = redis.Redis.from_url(redis_url)
    try:
        entries: Any = client.xrange(ALERTS_STREAM)
        queued = [(entry_id, Alert.from_stream_fields(f)) for entry_id, f in entries]
        mine = [a for _, a in queued if alert_id and str(a.alert_id) == alert_id.group(1)]
        # No limiter of a later test should call port 9 for ever.
        client.xdel(ALERTS_STREAM, *[i for i, a in queued if a.rule_id == mine[0].rule_id])
    finally:
        client.close()
    assert len(mine) == 1 and mine[0].kind == "test" and str(mine[0].rule_id) == rule_id
    unknown = run(database_url, "alerts", "test", "00000000-0000-0000-0000-000000000000",
                  ok=False)  # fmt: skip
    assert "no alert rule with id" in unknown
