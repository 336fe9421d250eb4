"""The analytics read paths (analytics service and ClickHouse directly), the numbers for
humans, and the settings."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from tests.dashboard.conftest import Accounts, Stack
from tests.support.processes import SERVICE_SECRETS, free_port
from watchllm_dashboard import format as fmt
from watchllm_dashboard.data.analytics import (
    AnalyticsUnavailable,
    QueryRejected,
    ServiceReader,
    frame,
)
from watchllm_dashboard.data.window import TimeWindow
from watchllm_dashboard.settings import DashboardSettings

QUERY_TOKEN = SERVICE_SECRETS["WATCHLLM_ANALYTICS_QUERY_TOKEN"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_json_and_native_values_make_the_same_frame() -> None:
    """The analytics API's JSON (Decimal and UUID as text, ISO times) and the driver's
    native values become one DataFrame, whichever path the dashboard reads."""
    columns = ["hour", "key_id", "requests", "cost_usd", "ttfb_ms", "latency_quantiles"]
    types = ["DateTime('UTC')", "UUID", "UInt64", "Decimal(38, 12)", "Nullable(Float64)",
             "Array(Float64)"]  # fmt: skip
    native = [[datetime(2026, 1, 2, 3, tzinfo=UTC), uuid.UUID(int=7), 12, Decimal("0.0012"),
               None, [1.0, 2.0, 3.0]],
              [datetime(2026, 1, 2, 4, tzinfo=UTC), uuid.UUID(int=8), 3, Decimal("1.5"), 2.5,
               [4.0, 5.0, 6.0]]]  # fmt: skip
    encoded = orjson.loads(orjson.dumps(native, default=str, option=orjson.OPT_NAIVE_UTC))
    assert isinstance(encoded[0][3], str) and isinstance(encoded[0][0], str)
    left, right = frame(columns, types, native), frame(columns, types, encoded)
    assert left.drop(columns="latency_quantiles").equals(right.drop(columns="latency_quantiles"))
    assert left["cost_usd"].tolist() == [0.0012, 1.5]
    assert str(left["hour"].dtype) == "datetime64[us, UTC]"
    assert left["key_id"].iloc[0] == str(uuid.UUID(int=7))


@pytest.mark.unit
def test_numbers_for_humans() -> None:
    assert [fmt.count(n) for n in (0, 999, 9_999, 12_345, 1_234_567, 2e9)] == [
        "0", "999", "9,999", "12.3k", "1.23M", "2B"]  # fmt: skip
    # Rounding reaches the next step: never "1e+03k".
    assert [fmt.count(n) for n in (999_500, 999_999, 999_999_999)] == ["1M", "1M", "1B"]
    assert [fmt.money(v) for v in (0, 0.000042, 0.42, 1234.5)] == [
        "$0.00", "$0.000042", "$0.42", "$1,234.50"]  # fmt: skip
    assert (fmt.percent(1, 3), fmt.percent(0, 0), fmt.percent(None, 5)) == ("33.3%", "—", "—")
    assert [fmt.duration_ms(v) for v in (0.25, 850.2, 1234, None)] == [
        "0.25 ms", "850 ms", "1.23 s", "—"]  # fmt: skip
    now = datetime(2026, 1, 2, 12, tzinfo=UTC)
    assert [fmt.ago(now - timedelta(seconds=s), now) for s in (5, 300, 7200, 172800)] == [
        "just now", "5 min ago", "2 h ago", "2 d ago"]  # fmt: skip
    assert fmt.ago(None) == "never"
    assert [fmt.span(s) for s in (42, 720, 72_159.4, 190_000)] == [
        "42 s", "12 min", "20 h 2 min", "2 d 4 h"]  # fmt: skip


@pytest.mark.unit
def test_settings_refuse_a_chdb_path_for_direct_reads() -> None:
    with pytest.raises(ValidationError, match="ClickHouse server URL"):
        DashboardSettings(dashboard_clickhouse_url="chdb:///tmp/x")
    settings = DashboardSettings(dashboard_session_idle_minutes=5)
    assert settings.session_policy.idle == timedelta(minutes=5)
    assert settings.dashboard_port == 3000


@pytest.mark.e2e
def test_the_service_reader_refuses_bad_questions_and_reports_a_missing_service(
    stack: Stack, accounts: Accounts
) -> None:
    reader = ServiceReader(stack.analytics.url, QUERY_TOKEN, 5)
    with pytest.raises(QueryRejected):
        reader.query("no_such_query", {})
    with pytest.raises(QueryRejected):
        reader.query("project_totals", {"project_id": "not-a-uuid"})
    reader.close()
    gone = ServiceReader(f"http://127.0.0.1:{free_port()}", None, 2)
    with pytest.raises(AnalyticsUnavailable):
        gone.query("project_totals", {})
    gone.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_direct_clickhouse_reads_give_the_frames_the_service_gives(
    stack: Stack, accounts: Accounts, traffic: object, tmp_path: Path
) -> None:
    probe = subprocess.run(
        [sys.executable, "-m", "tests.dashboard.direct_read_probe", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    direct = orjson.loads(probe.stdout)
    assert (direct["requests"], direct["rate_limited"], direct["hours"]) == (20, 5, 3)
    assert direct["cost"] == pytest.approx(0.02) and direct["log_rows"] == 5
    now = datetime.now(UTC)
    reader = ServiceReader(stack.analytics.url, QUERY_TOKEN, 5)
    log = reader.query(
        "project_request_log",
        {
            "project_id": accounts.project_id,
            "limit": 5,
            "start": now - timedelta(days=1),
            "end": now,
        },
    )
    reader.close()
    assert {k: str(v) for k, v in log.dtypes.items()} == direct["log_dtypes"]
    assert direct["empty_log_rows"] == 0 and direct["empty_log_columns"] == list(log.columns)


@pytest.mark.unit
def test_a_window_is_exactly_the_last_hours_and_says_so() -> None:
    """At 13:00:19 "Last hour" began at 13:00 and missed the requests of minutes before."""
    now = datetime(2026, 1, 2, 13, 0, 19, tzinfo=UTC)
    hour = TimeWindow.last("Last hour", now)
    assert (hour.start, hour.end) == (now - timedelta(hours=1), now)
    assert hour.hours() == [datetime(2026, 1, 2, h, tzinfo=UTC) for h in (12, 13)]
    assert hour.describe() == "Last hour: 2026-01-02 12:00 → 13:00 UTC"
    assert hour.percentile_hours() == "2026-01-02 12:00 → 13:00 UTC"
    day = TimeWindow.last("Last 24 hours", datetime(2026, 1, 2, 13, 59, tzinfo=UTC))
    assert day.start == datetime(2026, 1, 1, 13, 59, tzinfo=UTC) and len(day.hours()) == 25
    assert day.describe() == "Last 24 hours: 2026-01-01 13:59 → 2026-01-02 13:59 UTC"
    assert day.percentile_hours() == "2026-01-01 13:00 → 2026-01-02 13:59 UTC"
