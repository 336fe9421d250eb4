"""``python -m tests.analytics.inspect_store DSN DATABASE``: what a stopped analytics
service left in its store, as JSON on stdout.

A separate process, because chdb lets one process open a path and a test process may
already host an engine elsewhere. Reports every event id with its row count, the sums
of the raw rows, and the same sums read through the hourly rollup (projection).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import clickhouse_connect
import orjson

from watchllm_shared.contracts.analytics_queries import ANALYTICS_QUERIES


def main(dsn: str, database: str) -> None:
    client = clickhouse_connect.get_client(dsn=dsn, database=database)
    counts = client.query("SELECT event_id, count() FROM requests GROUP BY event_id")
    raw = client.query(
        "SELECT count(), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd),"
        " sum(cost_saved_usd) FROM requests"
    ).result_rows[0]
    usage = ANALYTICS_QUERIES["usage_by_project"]
    now = datetime.now(UTC)
    window = {"start": now - timedelta(days=1), "end": now + timedelta(hours=1)}
    rollup = client.query(usage.sql, parameters=usage.bind(window))
    columns = rollup.column_names
    rolled = {
        name: sum(row[columns.index(name)] for row in rollup.result_rows)
        for name in ("requests", "prompt_tokens", "completion_tokens", "cost_usd")
    }
    report = {
        "ids": {str(event_id): count for event_id, count in counts.result_rows},
        "rows": raw[0],
        "prompt_tokens": raw[1],
        "completion_tokens": raw[2],
        "cost_usd": str(raw[3]),
        "cost_saved_usd": str(raw[4]),
        "rollup": {name: str(value) for name, value in rolled.items()},
    }
    sys.stdout.buffer.write(orjson.dumps(report))
    client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
