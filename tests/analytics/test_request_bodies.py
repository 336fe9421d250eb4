"""Logged bodies from their stream to ``request_bodies`` and back through the named
queries (``bodies``, ``contracts.body_queries``), on the real service, Redis and chdb:
one row per request whatever is redelivered, a project never reads another's bodies,
text search finds the project's requests with their request-log fields, a body expires
at its own retention (dropped by the TTL at a merge) while its request's metadata
stays, and an unreadable entry is dead-lettered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client

from tests.analytics.conftest import RunningService, eventually, make_event, publish
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_shared.contracts.analytics_queries import ANALYTICS_QUERIES
from watchllm_shared.contracts.request_bodies import RequestBodies

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def body(project: uuid.UUID, request_id: str, text: str, **fields: Any) -> RequestBodies:
    return RequestBodies(
        request_id=request_id, project_id=project, occurred_at=fields.pop("at", NOW),
        endpoint="/v1/chat/completions",
        request=f'{{"messages": [{{"role": "user", "content": "{text}"}}]}}',
        response=f'{{"choices": [{{"message": {{"content": "about {text}"}}}}]}}', **fields,
    )  # fmt: skip


async def ask(running: RunningService, name: str, **params: Any) -> list[dict[str, Any]]:
    assert running.service.queries is not None and name in ANALYTICS_QUERIES
    result = await running.service.queries.run(name, params)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


async def test_bodies_are_stored_once_scoped_searched_and_expire_alone(
    running: RunningService, settings: AnalyticsSettings, redis_client: aioredis.Redis,
    inspector: Client,
) -> None:  # fmt: skip
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    old = NOW - timedelta(days=2)
    bodies = [
        body(mine, "req_a", "the blue needle"),
        body(mine, "req_b", "nothing here"),
        body(mine, "req_old", "an old needle", at=old, retention_days=1),
        body(mine, "req_kept", "a kept needle", at=old, retention_days=30),
        body(theirs, "req_t", "their needle"),
    ]
    events = [make_event(mine, b.occurred_at, request_id=b.request_id, model="gpt-4o")
              for b in bodies if b.project_id == mine]  # fmt: skip
    await publish(redis_client, settings.events_stream, events)
    entries = [*bodies, bodies[0]]  # a redelivered copy of req_a, in a later entry
    for entry in entries:
        await redis_client.xadd(settings.bodies_stream, entry.to_stream_fields())  # type: ignore[arg-type]
    await redis_client.xadd(settings.bodies_stream, {"data": b'{"request_id": 7}'})

    def logged(request_id: str = "") -> int:
        """Rows of the request log (of one request, when given)."""
        counted = inspector.query(
            "SELECT count() FROM requests WHERE {id:String} IN ('', request_id)",
            parameters={"id": request_id},
        )
        return int(counted.result_rows[0][0])

    async def all_in() -> bool:  # every entry handled (acked), every event stored
        (group,) = await redis_client.xinfo_groups(settings.bodies_stream)
        done = group["entries-read"] == len(entries) + 1 and group["pending"] == 0
        return done and logged() == 4

    await eventually(all_in, within=30)
    # One row per request (the copy skipped); the expired one is not kept (ClickHouse
    # drops a row already past its TTL when it writes the part, or at the next merge).
    inspector.command("OPTIMIZE TABLE request_bodies FINAL")
    ids = inspector.query("SELECT request_id FROM request_bodies ORDER BY request_id")
    assert [row[0] for row in ids.result_rows] == ["req_a", "req_b", "req_kept", "req_t"]
    assert logged("req_old") == 1  # its metadata stays
    assert await redis_client.xlen(f"{settings.bodies_stream}.dlq") == 1  # the unreadable one

    one = await ask(running, "request_bodies", project_id=mine, request_id="req_a")
    assert [(r["request_id"], r["request"], r["response"]) for r in one] == [
        ("req_a", bodies[0].request, bodies[0].response)
    ]
    assert await ask(running, "request_bodies", project_id=mine, request_id="req_t") == []  # theirs
    assert (
        await ask(running, "request_bodies", project_id=mine, request_id="req_old") == []
    )  # expired

    window = {"start": NOW - timedelta(days=3), "end": NOW + timedelta(minutes=1)}
    found = await ask(running, "project_request_search", project_id=mine, text="NEEDLE", **window)
    assert [(r["request_id"], r["model"]) for r in found] == [
        ("req_a", "gpt-4o"),
        ("req_kept", "gpt-4o"),
    ]  # newest first; not the expired one, not the other project's
    assert "the blue needle" in found[0]["request_excerpt"]
    assert "about the blue needle" in found[0]["response_excerpt"]

    async def trimmed() -> bool:  # what the group stored is not kept in Redis
        return await redis_client.xlen(settings.bodies_stream) == 0

    await eventually(trimmed, within=10)
