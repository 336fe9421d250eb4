"""Run as ``python -m tests.dashboard.direct_read_probe CHDB_DIR``: the dashboard's
direct ClickHouse reader against a chdb store of its own (a separate process, because
chdb opens one path per process and the test session may hold another). Prints JSON."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson

from watchllm_analytics.settings import AnalyticsSettings
from watchllm_analytics.store import open_store
from watchllm_dashboard.data.analytics import ClickHouseReader

PROJECT = uuid.UUID("00000000-0000-4000-8000-00000000000a")
KEY = uuid.UUID("00000000-0000-4000-9000-00000000000b")


def main(directory: Path) -> None:
    settings = AnalyticsSettings(data_dir=directory)
    store = open_store(settings)  # database and schema, as the analytics service makes them
    now = datetime.now(UTC).replace(minute=30)
    columns = [
        "event_id",
        "occurred_at",
        "project_id",
        "key_id",
        "model",
        "status",
        "cache",
        "cost_usd",
        "latency_ms",
        "request_id",
    ]
    rows = [[uuid.uuid4(), now - timedelta(hours=i % 3), PROJECT, KEY, "gpt-4o",
             "rate_limited" if i % 4 == 0 else "ok", "miss", Decimal("0.001"), 10.0 * i,
             f"req-{i}"] for i in range(20)]  # fmt: skip
    store.writer_client.insert("requests", rows, column_names=columns)
    reader = ClickHouseReader(settings.clickhouse_dsn(), settings.clickhouse_database, 10)
    window = {"project_id": PROJECT, "start": now - timedelta(hours=4), "end": now}
    totals = reader.query("project_key_totals", {**window, "key_id": KEY})
    outcomes = reader.query("project_outcomes_by_hour", window)
    log = reader.query("project_request_log", {**window, "limit": 5})
    nobody = {**window, "project_id": uuid.uuid4(), "limit": 5}
    empty_log = reader.query("project_request_log", nobody)  # chdb names no columns here
    answer = orjson.dumps(
        {
            "requests": int(totals.iloc[0]["requests"]),
            "cost": float(totals.iloc[0]["cost_usd"]),
            "rate_limited": int(outcomes["rate_limited"].sum()),
            "hours": len(outcomes),
            "log_rows": len(log),
            "log_dtypes": {k: str(v) for k, v in log.dtypes.items()},
            "empty_log_rows": len(empty_log),
            "empty_log_columns": list(empty_log.columns),
        }
    )
    sys.stdout.write(answer.decode() + "\n")
    reader.close()
    store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
