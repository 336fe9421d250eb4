"""The analytics schema: numbered SQL files, the same for chdb and a ClickHouse server.

``NNNN_name.sql`` files in this folder are applied in order, each once, and recorded in
``schema_migrations``. Statements end with ``;`` at the end of a line. Every statement
is idempotent (``IF NOT EXISTS``), so replicas starting together against one server
may both apply a file without harm. A file never changes once released; a change is a
new file.

Retention is configuration, not schema: :func:`apply_retention` replaces the table's
TTL when ``WATCHLLM_ANALYTICS_RETENTION_DAYS`` differs from it, or when the TTL has
another form (0001's ``toDateTime(occurred_at) + …`` overflowed after 2106; see 0003).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import partial
from importlib import resources

from clickhouse_connect.driver.client import Client

from watchllm_analytics.clickhouse import call

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def available() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            text = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], _statements(text)))
    return sorted(found, key=lambda m: m.version)


def _statements(text: str) -> tuple[str, ...]:
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return tuple(part.strip() for part in _STATEMENT_END.split(code) if part.strip())


def applied_versions(client: Client) -> set[int]:
    call(lambda: client.command(_LEDGER))
    result = call(lambda: client.query("SELECT DISTINCT version FROM schema_migrations"))
    return {int(row[0]) for row in result.result_rows}


def migrate(client: Client) -> list[int]:
    """Apply what is missing, in order; the versions applied now."""
    done = applied_versions(client)
    newly = []
    for migration in available():
        if migration.version in done:
            continue
        for statement in migration.statements:
            call(partial(client.command, statement))
        record = [[migration.version, migration.name]]
        call(partial(client.insert, "schema_migrations", record, column_names=["version", "name"]))
        log.info("applied analytics migration %04d_%s", migration.version, migration.name)
        newly.append(migration.version)
    return newly


def apply_retention(client: Client, days: int) -> bool:
    """Make the request log's TTL ``occurred_at + toIntervalDay(days)``; True when it had
    to change. The sum is a DateTime64, so it does not overflow (see 0003)."""
    ttl = f"TTL occurred_at + toIntervalDay({int(days)})"
    result = call(
        lambda: client.query(
            "SELECT engine_full FROM system.tables"
            " WHERE database = currentDatabase() AND name = 'requests'"
        )
    )
    if result.result_rows and f"{ttl} " in f"{result.result_rows[0][0]} ":
        return False
    call(lambda: client.command(f"ALTER TABLE requests MODIFY {ttl}"))
    log.info("request log retention set to %d days", days)
    return True
