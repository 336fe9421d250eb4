"""The ingest pipeline against real Redis and real chdb: exactly once, poison, redelivery,
ClickHouse failures, and the drain on stop."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from redis.exceptions import ResponseError

from tests.analytics.conftest import (
    RunningService,
    eventually,
    make_event,
    publish,
    start_service,
)
from watchllm_analytics.blocks import RowBlock
from watchllm_analytics.rows import decode_entry
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_analytics.store import open_store
from watchllm_analytics.writer import RequestLogWriter
from watchllm_shared.contracts import RequestCompleted

pytestmark = pytest.mark.integration


def stored(inspector: Client) -> tuple[int, int, int, Decimal]:
    """Rows, distinct event ids, tokens and cost in the request log."""
    row = inspector.query(
        "SELECT count(), uniqExact(event_id), sum(prompt_tokens + completion_tokens),"
        " sum(cost_usd) FROM requests"
    ).result_rows[0]
    return int(row[0]), int(row[1]), int(row[2]), Decimal(row[3])


def expected(events: list[RequestCompleted]) -> tuple[int, int, int, Decimal]:
    tokens = sum(e.prompt_tokens + e.completion_tokens for e in events)
    return len(events), len(events), tokens, sum((e.cost_usd for e in events), Decimal(0))


async def pending(client: aioredis.Redis, settings: AnalyticsSettings) -> int:
    """Entries read and not acknowledged; 0 until the service has created its group
    (it does so as it starts, which may be after the test's first look)."""
    try:
        info = await client.xpending(settings.events_stream, settings.analytics_consumer_group)
    except ResponseError as exc:
        if "NOGROUP" in str(exc):
            return 0
        raise
    return int(info["pending"])


async def pending_is(client: aioredis.Redis, settings: AnalyticsSettings, count: int) -> bool:
    return await pending(client, settings) == count


async def wait_stored(inspector: Client, count: int, within: float = 10.0) -> None:
    async def done() -> bool:
        return stored(inspector)[0] >= count

    await eventually(done, within)


async def test_every_event_is_stored_once_with_exact_sums_then_acked(
    running: RunningService, redis_client: aioredis.Redis, settings: AnalyticsSettings,
    inspector: Client,
) -> None:  # fmt: skip
    projects = [uuid.uuid4() for _ in range(3)]
    events = [make_event(projects[i % 3]) for i in range(1_200)]
    await publish(redis_client, settings.events_stream, events)
    await wait_stored(inspector, len(events))
    assert stored(inspector) == expected(events)
    await eventually(lambda: pending_is(redis_client, settings, 0))
    assert running.service.metrics.rows_written._value.get() == len(events)


async def test_poison_goes_to_the_dead_letter_stream_and_the_rest_flows_on(
    running: RunningService, redis_client: aioredis.Redis, settings: AnalyticsSettings,
    inspector: Client,
) -> None:  # fmt: skip
    good = [make_event() for _ in range(200)]
    stream = settings.events_stream
    await publish(redis_client, stream, good[:100])
    poison_ids = [
        await redis_client.xadd(stream, {"data": b"{not json"}),
        await redis_client.xadd(stream, {"unexpected": b"field"}),
        await redis_client.xadd(stream, {"data": make_event().model_dump_json().replace(
            '"prompt_tokens":', '"prompt_tokens":-1,"x":').encode()}),
    ]  # fmt: skip
    await publish(redis_client, stream, good[100:])
    await wait_stored(inspector, len(good))
    await eventually(lambda: pending_is(redis_client, settings, 0))
    parked = await redis_client.xrange(f"{stream}.dlq")
    assert [fields[b"source_id"] for _, fields in parked] == poison_ids
    assert {fields[b"reason"] for _, fields in parked} == {b"unreadable"}
    assert parked[0][1][b"data"] == b"{not json" and b"Invalid JSON" in parked[0][1][b"error"]
    assert b"no field" in parked[1][1][b"error"]
    assert stored(inspector) == expected(good)
    dead = running.service.metrics.dead_lettered.labels("unreadable")._value.get()
    assert dead == 3


async def test_poison_in_the_same_page_as_good_events_does_not_hold_them_back(
    running: RunningService, redis_client: aioredis.Redis, settings: AnalyticsSettings,
    inspector: Client,
) -> None:  # fmt: skip
    """One pipeline of XADDs, so the poison shares a page with the good events: the JSON
    reader refuses that page whole, and each entry is judged alone by the contract."""
    good = [make_event() for _ in range(300)]
    wrong_type = make_event().model_dump_json().replace('"http_status":200', '"http_status":"x"')
    poison = [{"data": b"{not json}"}, {"data": wrong_type.encode()}]
    async with redis_client.pipeline(transaction=False) as pipe:
        for fields in (
            [e.to_stream_fields() for e in good[:150]]
            + poison
            + [e.to_stream_fields() for e in good[150:]]
        ):
            pipe.xadd(settings.events_stream, fields)  # type: ignore[arg-type]
        ids = await pipe.execute()
    await wait_stored(inspector, len(good))
    await eventually(lambda: pending_is(redis_client, settings, 0))
    assert stored(inspector) == expected(good)
    parked = await redis_client.xrange(f"{settings.events_stream}.dlq")
    assert [fields[b"source_id"] for _, fields in parked] == ids[150:152]
    assert b"http_status" in parked[1][1][b"error"]


@pytest.mark.parametrize("crashed_consumer", ["test-consumer", "another-consumer"])
async def test_a_batch_stored_but_not_acked_before_a_crash_is_not_stored_twice(
    crashed_consumer: str, settings: AnalyticsSettings, redis_client: aioredis.Redis,
    inspector: Client, cleanup_stream: None,
) -> None:  # fmt: skip
    """The crashed process read 300 entries and stored 200 of them, then died before
    XACK. Same consumer name: taken back at start; another name: reclaimed when idle."""
    events = [make_event() for _ in range(300)]
    stream, group = settings.events_stream, settings.analytics_consumer_group
    await redis_client.xgroup_create(stream, group, id="0", mkstream=True)
    await publish(redis_client, stream, events)
    read = await redis_client.xreadgroup(group, crashed_consumer, {stream: ">"}, count=1000)
    store = open_store(settings)
    rows = [decode_entry(entry_id, fields) for entry_id, fields in read[0][1]]
    RequestLogWriter(store.writer_client).write(RowBlock.from_rows(rows[:200]))
    store.close()

    running = await start_service(settings)
    try:
        await wait_stored(inspector, 300)
        await eventually(lambda: pending_is(redis_client, settings, 0))
        assert stored(inspector) == expected(events)
        metrics = running.service.metrics
        assert metrics.already_stored._value.get() == 200
        source = (
            "own_pending" if crashed_consumer == settings.analytics_consumer_name else "reclaimed"
        )
        assert metrics.redelivered.labels(source)._value.get() == 300
    finally:
        await running.stop()


async def test_an_event_in_a_new_entry_after_it_was_stored_is_not_stored_twice(
    running: RunningService, redis_client: aioredis.Redis, settings: AnalyticsSettings,
    inspector: Client,
) -> None:  # fmt: skip
    """A producer that re-sends after a timeout (the gateway re-sends its whole pipeline),
    or an operator's replay: entries the group delivers for the first time (XREADGROUP
    ``>``), carrying events already stored. This is why the writer checks every row."""
    events = [make_event() for _ in range(60)]
    await publish(redis_client, settings.events_stream, events)
    await wait_stored(inspector, 60)
    await eventually(lambda: pending_is(redis_client, settings, 0))
    later = make_event()
    await publish(redis_client, settings.events_stream, events[10:30] + [later] + events[10:12])
    await wait_stored(inspector, 61)
    await eventually(lambda: pending_is(redis_client, settings, 0))
    assert stored(inspector) == expected([*events, later])
    assert running.service.metrics.already_stored._value.get() == 22
    assert running.service.metrics.redelivered.labels("own_pending")._value.get() == 0


async def test_an_entry_that_keeps_failing_is_parked_and_its_last_try_is_alone(
    settings: AnalyticsSettings, redis_client: aioredis.Redis, inspector: Client,
    cleanup_stream: None,
) -> None:  # fmt: skip
    stream, group = settings.events_stream, settings.analytics_consumer_group
    await redis_client.xgroup_create(stream, group, id="0", mkstream=True)
    last_try, hopeless = make_event(), make_event()
    await publish(redis_client, stream, [last_try, hopeless])
    read = await redis_client.xreadgroup(group, "crashed", {stream: ">"})
    (last_id, _), (hopeless_id, _) = read[0][1]
    max_deliveries = settings.analytics_max_deliveries
    # As if delivered and failed that often; the takeover adds one delivery.
    await redis_client.xclaim(stream, group, "crashed", 0, [last_id], retrycount=max_deliveries - 1)
    await redis_client.xclaim(stream, group, "crashed", 0, [hopeless_id], retrycount=max_deliveries)

    running = await start_service(settings)
    try:
        await wait_stored(inspector, 1)
        await eventually(lambda: pending_is(redis_client, settings, 0))
        parked = await redis_client.xrange(f"{stream}.dlq")
        assert [fields[b"source_id"] for _, fields in parked] == [hopeless_id]
        assert parked[0][1][b"reason"] == b"too_many_deliveries"
        assert parked[0][1][b"deliveries"] == str(max_deliveries + 1).encode()
        assert stored(inspector) == expected([last_try])
        alone = running.service.metrics.batch_rows.labels("alone")._sum.get()
        assert alone == 1
    finally:
        await running.stop()


async def test_while_clickhouse_fails_nothing_is_acked_then_everything_flows_once(
    running: RunningService, redis_client: aioredis.Redis, settings: AnalyticsSettings,
    inspector: Client,
) -> None:  # fmt: skip
    inspector.command("RENAME TABLE requests TO requests_away")
    events = [make_event() for _ in range(100)]
    await publish(redis_client, settings.events_stream, events)
    health = running.service.health

    async def failing() -> bool:
        return health.clickhouse == "disconnected" and await pending(redis_client, settings) == 100

    await eventually(failing)
    await asyncio.sleep(0.5)  # retries go on; still nothing acked, nothing parked
    assert await pending(redis_client, settings) == 100
    assert await redis_client.xlen(f"{settings.events_stream}.dlq") == 0
    assert running.service.metrics.insert_errors._value.get() >= 1

    inspector.command("RENAME TABLE requests_away TO requests")
    await wait_stored(inspector, 100)
    await eventually(lambda: pending_is(redis_client, settings, 0))
    assert stored(inspector) == expected(events)
    assert health.clickhouse == "connected"


async def test_a_row_clickhouse_refuses_is_isolated_and_parked(
    running: RunningService, redis_client: aioredis.Redis, settings: AnalyticsSettings,
    inspector: Client,
) -> None:  # fmt: skip
    inspector.command("ALTER TABLE requests ADD CONSTRAINT no_poison CHECK model != 'poison-model'")
    good = [make_event() for _ in range(100)]
    refused = make_event(model="poison-model")
    await publish(redis_client, settings.events_stream, good[:50] + [refused] + good[50:])
    await wait_stored(inspector, 100)
    await eventually(lambda: pending_is(redis_client, settings, 0))
    parked = await redis_client.xrange(f"{settings.events_stream}.dlq")
    assert len(parked) == 1
    assert parked[0][1][b"reason"] == b"rejected"
    assert b"no_poison" in parked[0][1][b"error"]
    assert stored(inspector) == expected(good)


async def test_stop_stores_and_acks_what_was_read(
    settings: AnalyticsSettings, redis_client: aioredis.Redis, inspector: Client,
    cleanup_stream: None,
) -> None:  # fmt: skip
    patient = settings.model_copy(update={"analytics_batch_max_seconds": 60.0})
    running = await start_service(patient)
    events = [make_event() for _ in range(40)]
    await publish(redis_client, settings.events_stream, events)
    await eventually(lambda: pending_is(redis_client, settings, 40))
    assert stored(inspector)[0] == 0  # read, waiting in the open batch
    await running.stop()
    assert stored(inspector) == expected(events)
    assert await pending(redis_client, settings) == 0
    assert not running.failures
