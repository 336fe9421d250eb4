"""Times the request log cannot hold are dead-lettered, never silently dropped; the TTL
does not overflow for any time it can hold. Real Redis, real chdb.

The log holds ``occurred_at`` from 1970-01-01T00:00:00Z to before 2106-02-07T06:28:16Z
(``watchllm_analytics.rows``). The table's first TTL, ``toDateTime(occurred_at) + N
days``, wrapped past 2106 into the past, so such rows were dropped as expired at insert
or merge after being acknowledged and counted as written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client

from tests.analytics.conftest import RunningService, eventually, make_event, publish
from tests.analytics.test_ingest import pending_is, wait_stored
from watchllm_analytics.blocks import RowBlock
from watchllm_analytics.migrations import _LEDGER, apply_retention, available
from watchllm_analytics.rows import decode_entry
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_analytics.store import open_store
from watchllm_analytics.writer import RequestLogWriter
from watchllm_shared.contracts import RequestCompleted

pytestmark = pytest.mark.integration

# Within the stored times, and beyond 2106 once the retention is added: the old TTL
# dropped these.
EDGES = [datetime(2105, 12, 31, tzinfo=UTC), datetime(2106, 2, 7, 6, 28, 15, 999000, tzinfo=UTC)]
FAR_FUTURE = [
    datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC),
    datetime(2150, 1, 1, tzinfo=UTC),
    datetime(2400, 1, 1, tzinfo=UTC),
]
FAR_PAST = [
    datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    datetime(1800, 1, 1, tzinfo=UTC),
]


def stored_times(inspector: Client) -> dict[str, datetime]:
    rows = inspector.query("SELECT event_id, occurred_at FROM requests").result_rows
    return {str(event_id): moment.replace(tzinfo=UTC) for event_id, moment in rows}


def engine(inspector: Client) -> str:
    return str(
        inspector.query(
            "SELECT engine_full FROM system.tables"
            " WHERE database = currentDatabase() AND name = 'requests'"
        ).result_rows[0][0]
    )


async def test_events_outside_the_stored_times_are_dead_lettered_and_nothing_valid_is_lost(
    running: RunningService, redis_client: aioredis.Redis, settings: AnalyticsSettings,
    inspector: Client,
) -> None:  # fmt: skip
    """Both decoding paths: a page the JSON reader takes (the fast path leaves the odd
    entries to the contract) and a page with a poison entry, refused whole (every entry
    goes through ``canonical`` or the contract)."""
    stream = settings.events_stream
    now = datetime.now(UTC)
    outside = [make_event(at=moment) for moment in FAR_FUTURE + FAR_PAST]
    valid = [make_event(at=now - timedelta(minutes=i)) for i in range(50)]
    valid += [make_event(at=moment) for moment in EDGES]
    fast_page = valid[:25] + outside + valid[25:27]
    slow_page = [{"data": b"{bad"}] + [
        e.to_stream_fields() for e in valid[27:] + [make_event(at=m) for m in FAR_FUTURE]
    ]
    await publish(redis_client, stream, fast_page)
    async with redis_client.pipeline(transaction=False) as pipe:
        for fields in slow_page:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        await pipe.execute()

    await wait_stored(inspector, len(valid))
    await eventually(lambda: pending_is(redis_client, settings, 0))
    parked = await redis_client.xrange(f"{stream}.dlq")
    assert len(parked) == len(outside) + 1 + len(FAR_FUTURE)
    assert {fields[b"reason"] for _, fields in parked} == {b"unreadable"}
    time_errors = [fields[b"error"] for _, fields in parked if fields[b"data"] != b"{bad"]
    assert len(time_errors) == len(outside) + len(FAR_FUTURE)
    reason = b" is outside the times the request log can store (1970-01-01T00:00:00Z to before"
    for error in time_errors:
        assert error.startswith(b"occurred_at=") and reason in error, error
    parked_ids = {RequestCompleted.model_validate_json(f[b"data"]).event_id
                  for _, f in parked if f[b"data"] != b"{bad"}  # fmt: skip
    assert {e.event_id for e in outside} <= parked_ids

    metrics = running.service.metrics
    assert metrics.rows_written._value.get() == len(valid)
    assert metrics.dead_lettered.labels("unreadable")._value.get() == len(parked)
    expected = {str(e.event_id): e.occurred_at.replace(microsecond=0) for e in valid}
    got = {key: moment.replace(microsecond=0) for key, moment in stored_times(inspector).items()}
    assert got == expected
    inspector.command("OPTIMIZE TABLE requests FINAL")  # the TTL is applied when parts merge
    got = {key: moment.replace(microsecond=0) for key, moment in stored_times(inspector).items()}
    assert got == expected


def test_a_log_with_the_overflowing_ttl_is_migrated_and_retention_still_applies(
    settings: AnalyticsSettings, inspector: Client
) -> None:
    """A store made before 0003, with the longest retention: the old TTL dropped even
    today's rows (2026 + 100 years is past 2106). Migrated, they are kept; a shorter
    retention still expires old rows."""
    inspector.command(_LEDGER)
    for migration in available():
        if migration.version < 3:
            for statement in migration.statements:
                inspector.command(statement)
            inspector.insert("schema_migrations", [[migration.version, migration.name]],
                             column_names=["version", "name"])  # fmt: skip
    inspector.command(
        "ALTER TABLE requests MODIFY TTL toDateTime(occurred_at) + toIntervalDay(36500)"
    )  # what apply_retention set before this fix, with the longest retention allowed

    store = open_store(settings.model_copy(update={"analytics_retention_days": 36_500}))
    try:
        now = datetime.now(UTC)
        events = [make_event(at=moment) for moment in [now, now - timedelta(days=400), *EDGES]]
        entries = [(f"1-{i}".encode(), e.to_stream_fields()) for i, e in enumerate(events)]
        rows = [decode_entry(entry_id, {k.encode(): v for k, v in fields.items()})
                for entry_id, fields in entries]  # fmt: skip
        RequestLogWriter(store.writer_client).write(RowBlock.from_rows(rows))
        inspector.command("OPTIMIZE TABLE requests FINAL")
        assert set(stored_times(inspector)) == {str(e.event_id) for e in events}
        assert "TTL occurred_at + toIntervalDay(36500) SETTINGS" in engine(inspector)

        assert apply_retention(store.writer_client, 365)
        assert not apply_retention(store.writer_client, 365)
        assert "TTL occurred_at + toIntervalDay(365) SETTINGS" in engine(inspector)
        inspector.command("OPTIMIZE TABLE requests FINAL")
        kept = {str(e.event_id) for e in events if e is not events[1]}
        assert set(stored_times(inspector)) == kept  # 400 days old: expired
    finally:
        store.close()


def test_the_migration_widens_retention_to_the_longest_the_settings_allow() -> None:
    """0003 sets the new TTL form before ``apply_retention`` sets the configured days: with
    the longest retention allowed, it never expires a row that retention keeps."""
    [statement] = next(m for m in available() if m.version == 3).statements
    bounds = AnalyticsSettings.model_fields["analytics_retention_days"].metadata
    longest = next(bound.le for bound in bounds if hasattr(bound, "le"))
    assert statement == f"ALTER TABLE requests MODIFY TTL occurred_at + toIntervalDay({longest})"
