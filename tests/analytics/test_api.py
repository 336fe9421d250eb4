"""The HTTP side against real Redis and chdb: the dashboard's queries (embedded read
path), probes, health, metrics, and the heartbeat the gateway reads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from pydantic import SecretStr

from tests.analytics.conftest import (
    QUERY_TOKEN,
    RunningService,
    eventually,
    make_event,
    publish,
)
from watchllm_analytics.main import create_app
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_shared.contracts import RequestStatus
from watchllm_shared.contracts.analytics_queries import ANALYTICS_QUERIES
from watchllm_shared.contracts.health import Heartbeat, heartbeat_key
from watchllm_shared.metrics_listener import MetricsEndpoint, start_metrics_listener
from watchllm_shared.settings import MissingSecret

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


@pytest.fixture
async def http(running: RunningService) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(running.service.settings, running.service)
    app.state.service = running.service  # the lifespan ran already (the fixture started it)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {QUERY_TOKEN}"}  # as the dashboard sends it
    async with httpx.AsyncClient(
        transport=transport, base_url="http://analytics", headers=headers
    ) as client:
        yield client


@pytest.fixture
async def project(
    running: RunningService, redis_client: aioredis.Redis, settings: AnalyticsSettings,
    inspector: Client,
) -> tuple[uuid.UUID, list]:  # fmt: skip
    """One project with events over two hours (one failed), and another project's noise."""
    project_id = uuid.uuid4()
    events = [make_event(project_id, NOW - timedelta(hours=1)) for _ in range(30)]
    events += [make_event(project_id, NOW) for _ in range(19)]
    events.append(make_event(project_id, NOW, status=RequestStatus.UPSTREAM_ERROR,
                             error_type="upstream_5xx", http_status=502))  # fmt: skip
    noise = [make_event(uuid.uuid4(), NOW) for _ in range(25)]
    await publish(redis_client, settings.events_stream, events + noise)

    async def stored() -> bool:
        return inspector.query("SELECT count() FROM requests").result_rows[0][0] == 75

    await eventually(stored)
    return project_id, events


def window(**extra: object) -> dict[str, object]:
    return {"start": (NOW - timedelta(hours=3)).isoformat(), "end": NOW.isoformat(), **extra}


async def test_project_totals_match_what_was_published(http: httpx.AsyncClient, project) -> None:
    project_id, events = project
    reply = await http.post("/v1/queries/project_totals", json=window(project_id=str(project_id)))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    row = dict(zip(body["columns"], body["rows"][0], strict=True))
    assert row["requests"] == 50 and row["errors"] == 1
    assert row["prompt_tokens"] == sum(e.prompt_tokens for e in events)
    assert Decimal(row["cost_usd"]) == sum((e.cost_usd for e in events), Decimal(0))
    assert row["latency_p50_ms"] <= row["latency_p95_ms"] <= row["latency_p99_ms"]
    assert body["types"][body["columns"].index("cost_usd")] == "Decimal(38, 12)"


async def test_usage_by_hour_and_recent_requests(http: httpx.AsyncClient, project) -> None:
    project_id, _ = project
    params = window(project_id=str(project_id))
    hourly = (await http.post("/v1/queries/project_usage_by_hour", json=params)).json()
    requests_per_hour = [row[hourly["columns"].index("requests")] for row in hourly["rows"]]
    assert requests_per_hour == [30, 20]
    recent = await http.post(
        "/v1/queries/project_recent_requests",
        json={"project_id": str(project_id), "limit": 5, "errors_only": True},
    )
    body = recent.json()
    assert [row[body["columns"].index("error_type")] for row in body["rows"]] == ["upstream_5xx"]


async def test_an_empty_answer_names_the_same_columns(http: httpx.AsyncClient, project) -> None:
    """chdb names no columns when no row matches; the dashboard still needs them."""
    project_id, _ = project
    full = (await http.post("/v1/queries/project_usage_by_hour",
                            json=window(project_id=str(project_id)))).json()  # fmt: skip
    for _ in range(2):  # the second answer comes from the kept description
        empty = (await http.post("/v1/queries/project_usage_by_hour",
                                 json=window(project_id=str(uuid.uuid4())))).json()  # fmt: skip
        assert empty["rows"] == [] and full["rows"]
        assert empty["columns"] == full["columns"]
        # DESCRIBE also names the time zone (DateTime('UTC')) where a result says DateTime.
        assert [t.split("(")[0] for t in empty["types"]] == [t.split("(")[0] for t in full["types"]]


async def test_bad_requests_are_refused_before_clickhouse(http: httpx.AsyncClient) -> None:
    assert (await http.post("/v1/queries/drop_everything", json={})).status_code == 404
    reply = await http.post("/v1/queries/project_totals", json=window(project_id="x'; DROP"))
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["project_id"]
    listing = (await http.get("/v1/queries")).json()
    assert {q["name"] for q in listing} == set(ANALYTICS_QUERIES)


async def test_the_query_api_answers_only_the_token(
    running: RunningService, settings: AnalyticsSettings
) -> None:
    """(tests/analytics/test_query_token.py attacks the real service; here the rules.)"""
    app = create_app(settings, running.service)
    app.state.service = running.service
    body = {"start": (NOW - timedelta(hours=1)).isoformat(), "end": NOW.isoformat()}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        refused = [{}, {"Authorization": "Bearer nope"}, {"Authorization": QUERY_TOKEN},
                   {"Authorization": f"Basic {QUERY_TOKEN}"},
                   {"Authorization": f"Bearer {QUERY_TOKEN}x"},
                   {"Authorization": f"Bearer {QUERY_TOKEN[:-1]}"}]  # fmt: skip
        for headers in refused:
            assert (await c.get("/v1/queries", headers=headers)).status_code == 401, headers
            answer = await c.post("/v1/queries/usage_by_project", json=body, headers=headers)
            assert answer.status_code == 401 and "rows" not in answer.json(), headers
        right = {"Authorization": f"bearer {QUERY_TOKEN}"}  # the scheme is case-blind
        assert (await c.get("/v1/queries", headers=right)).status_code == 200
        assert (await c.post("/v1/queries/usage_by_project", json=body,
                             headers=right)).status_code == 200  # fmt: skip
        assert (await c.get("/livez")).status_code == 200  # probes stay open
    # Without a token (or with a short one) there is no app to ask.
    for token in (None, SecretStr("short-token")):
        with pytest.raises(MissingSecret, match="WATCHLLM_ANALYTICS_QUERY_TOKEN"):
            create_app(settings.model_copy(update={"analytics_query_token": token}))


async def test_usage_queries_read_the_hourly_projection(inspector: Client, project) -> None:
    project_id, _ = project
    for name in ("project_totals", "project_usage_by_hour", "project_usage_by_model",
                 "project_usage_by_model_and_hour", "usage_by_project"):  # fmt: skip
        query = ANALYTICS_QUERIES[name]
        scoped = "project_id" in query.params.model_fields
        raw = window(project_id=str(project_id)) if scoped else window()
        plan = inspector.query("EXPLAIN " + query.sql, parameters=query.bind(raw)).result_rows
        assert any("usage_by_project_hour_model" in line[0] for line in plan), (name, plan)


async def test_a_window_counts_exactly_its_rows_and_still_reads_the_projection(
    http: httpx.AsyncClient, running: RunningService, redis_client: aioredis.Redis,
    settings: AnalyticsSettings, inspector: Client,
) -> None:  # fmt: skip
    """Windows were whole hours ("Last hour" at 13:00:19 read only the hour since 13:00).
    A window is exact to the millisecond, its whole hours from the projection, its ends
    from the rows."""
    project_id = uuid.uuid4()
    ten = NOW.replace(minute=0) - timedelta(hours=3)  # 10:00, say
    ms = timedelta(milliseconds=1)
    start, end = ten + timedelta(minutes=20), ten + timedelta(hours=2, minutes=20)
    inside = [start, ten + timedelta(hours=1) - ms, ten + timedelta(hours=1),
              ten + timedelta(hours=2) - ms, ten + timedelta(hours=2), end]  # fmt: skip
    outside = [start - ms, end + ms, ten, ten + timedelta(hours=3)]
    events = [make_event(project_id, at) for at in inside + outside]
    await publish(redis_client, settings.events_stream, events)

    async def stored() -> bool:
        result = inspector.query(
            "SELECT count() FROM requests WHERE project_id = {p:UUID}", parameters={"p": project_id}
        )
        return result.result_rows[0][0] == len(events)

    await eventually(stored)

    async def ask(name: str, first: datetime, last: datetime) -> list[dict[str, object]]:
        params = {"project_id": str(project_id), "start": first.isoformat(),
                  "end": last.isoformat()}  # fmt: skip
        if name == "usage_by_project":
            del params["project_id"]
        body = (await http.post(f"/v1/queries/{name}", json=params)).json()
        return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]

    assert [r["requests"] for r in await ask("project_totals", start, end)] == [6]
    hourly = await ask("project_usage_by_hour", start, end)
    assert [r["requests"] for r in hourly] == [2, 2, 2]
    assert sum(r["requests"] for r in await ask("project_usage_by_model", start, end)) == 6
    everyone = await ask("usage_by_project", start, end)
    assert [r["requests"] for r in everyone if r["project_id"] == str(project_id)] == [6]
    on_the_hour = await ask("project_totals", ten + timedelta(hours=1), ten + timedelta(hours=2))
    assert [r["requests"] for r in on_the_hour] == [3]  # both ends included
    in_one_hour = await ask("project_totals", start, start + timedelta(minutes=30))
    assert [r["requests"] for r in in_one_hour] == [1]
    query = ANALYTICS_QUERIES["project_totals"]
    bound = query.bind({"project_id": project_id, "start": start, "end": end})
    plan = inspector.query("EXPLAIN " + query.sql, parameters=bound).result_rows
    assert sum("usage_by_project_hour_model" in line[0] for line in plan) == 2  # sums, quantiles


async def test_probes_health_metrics_and_heartbeat(
    http: httpx.AsyncClient, running: RunningService, redis_client: aioredis.Redis
) -> None:
    assert (await http.get("/livez")).json() == {"status": "alive"}

    async def ready() -> bool:
        return (await http.get("/readyz")).status_code == 200

    await eventually(ready)
    health = (await http.get("/health")).json()
    assert health["status"] == "healthy" and health["clickhouse"] == "connected"
    assert set(health["consumer_group"]) == {"name", "lag", "pending", "dead_letters"}
    # /metrics is not on the API port (which serves the query API): the listener of its
    # own serves the app's registry (``python -m watchllm_analytics`` starts it).
    assert (await http.get("/metrics")).status_code == 404
    registry = create_app(running.service.settings, running.service).state.metrics_registry
    listener = start_metrics_listener(MetricsEndpoint(registry, 0, "-"), "127.0.0.1")
    try:
        async with httpx.AsyncClient() as scraper:
            metrics = (await scraper.get(f"http://127.0.0.1:{listener.port}/metrics")).text
    finally:
        listener.close()
    for name in ("watchllm_analytics_consumer_lag", "watchllm_analytics_batch_rows",
                 "watchllm_analytics_insert_seconds", "watchllm_analytics_rows_written_total",
                 "watchllm_analytics_dead_letter_size"):  # fmt: skip
        assert name in metrics

    beats: list[Heartbeat] = []

    async def beating() -> bool:  # this service's beat (other tests' services share the key)
        raw = await redis_client.get(heartbeat_key("analytics"))
        beat = Heartbeat.model_validate(orjson.loads(raw)) if raw is not None else None
        beats[:] = [beat] if beat is not None and beat.instance == "test-consumer" else []
        return bool(beats)

    await eventually(beating)
    assert beats[0].stores == {"clickhouse": "connected"}
    assert beats[0].dependencies == {"clickhouse": "up"}  # the first version's words, too
