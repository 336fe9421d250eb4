"""Usage by custom property and by end user, and the request log's filters on them
(``contracts.attribution_queries``, ``request_log_queries``), on real chdb: a generated
data set goes in through the service's own decoder and writer, and every group's
requests, errors, cost, savings and latency percentiles match what Python computes from
the same events, exactly. Another project with the same names and users never shows."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from tests.analytics.conftest import QUERY_TOKEN, make_event
from watchllm_analytics.page_decoder import decode_page
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_analytics.store import AnalyticsStore, open_store
from watchllm_analytics.writer import RequestLogWriter
from watchllm_shared.contracts import RequestCompleted, RequestStatus
from watchllm_shared.contracts.analytics_queries import ANALYTICS_QUERIES

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = {"start": NOW - timedelta(hours=2), "end": NOW}
FEATURES = ("summary", "chat", "search")
USERS = ("ada", "grace", "linus", "ü-user 7")


def generated(project: uuid.UUID, count: int, seed: int) -> list[RequestCompleted]:
    """Events over the window: some with a feature, a tier, both or neither; some with
    an end user; every status; costs and latencies of every size."""
    rng = random.Random(seed)
    events = []
    for number in range(count):
        properties = {}
        if rng.random() < 0.8:
            properties["feature"] = rng.choice(FEATURES)
        if rng.random() < 0.5:
            properties["tier"] = rng.choice(("gold", "free"))
        events.append(make_event(
            project, NOW - timedelta(seconds=rng.randint(0, 7000), milliseconds=number % 1000),
            properties=properties, end_user=rng.choice((*USERS, None)),
            status=rng.choice([RequestStatus.OK] * 3 + list(RequestStatus)),
            cost_usd=Decimal(rng.randint(0, 10**7)) / 10**12,
            cost_saved_usd=Decimal(rng.choice((0, rng.randint(1, 10**6)))) / 10**12,
            latency_ms=rng.choice((rng.uniform(1, 5000), float(rng.randint(1, 50)))),
        ))  # fmt: skip
    return events


def store_events(store: AnalyticsStore, events: list[RequestCompleted]) -> None:
    """Through the page decoder (the fast path) and the writer, as the service does."""
    fields = [{b"data": event.to_stream_fields()["data"]} for event in events]
    decoded = decode_page([f"1-{i}".encode() for i in range(len(events))], fields)
    assert decoded.fast == len(events) and not decoded.unreadable
    outcome = RequestLogWriter(store.writer_client).write(decoded.block)
    assert outcome.written == len(events) and not outcome.rejected


@pytest.fixture(scope="module")
def stored(
    chdb_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AnalyticsStore, uuid.UUID, list[Any]]]:
    """One store for the module's tests (they only read it)."""
    settings = AnalyticsSettings(
        redis_url="redis://127.0.0.1:1", data_dir=tmp_path_factory.mktemp("attribution"),
        clickhouse_url=chdb_dsn, clickhouse_database=f"test_{uuid.uuid4().hex[:10]}",
        analytics_query_token=SecretStr(QUERY_TOKEN),
    )  # fmt: skip
    store = open_store(settings)
    project, other = uuid.uuid4(), uuid.uuid4()
    events = generated(project, 700, seed=17)
    store_events(store, events + generated(other, 300, seed=18))  # the same names and users
    yield store, project, events
    store.close()


def ask(
    store: AnalyticsStore, project: uuid.UUID, name: str, **params: Any
) -> list[dict[str, Any]]:
    query = ANALYTICS_QUERIES[name]
    bound = query.bind({"project_id": project, **WINDOW, **params})
    result = store.query_client.query(query.sql, parameters=bound)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def exact_quantile(values: list[float], level: float) -> float:
    """``quantileExact``'s: the value at index ⌊level × n⌋ of the sorted values."""
    ordered = sorted(values)
    return ordered[min(int(level * len(ordered)), len(ordered) - 1)]


def expected_usage(groups: dict[str, list[RequestCompleted]]) -> dict[str, dict[str, Any]]:
    return {
        key: {
            "requests": len(events),
            "errors": sum(e.status is not RequestStatus.OK for e in events),
            "cost_usd": sum((e.cost_usd for e in events), Decimal(0)),
            "cost_saved_usd": sum((e.cost_saved_usd for e in events), Decimal(0)),
            "latency_p50_ms": exact_quantile([e.latency_ms for e in events], 0.5),
            "latency_p95_ms": exact_quantile([e.latency_ms for e in events], 0.95),
        }
        for key, events in groups.items()
    }


def measured(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {row.pop(key): row for row in rows}


def test_usage_by_property_value_matches_the_data_set_exactly(
    stored: tuple[AnalyticsStore, uuid.UUID, list[RequestCompleted]],
) -> None:
    store, project, events = stored
    for name in ("feature", "tier"):
        groups: dict[str, list[RequestCompleted]] = defaultdict(list)
        for event in events:
            groups[event.properties.get(name, "")].append(event)  # '': without it
        rows = ask(store, project, "project_usage_by_property", property=name, limit=1000)
        assert measured(rows, "value") == expected_usage(groups)
        spent = [(row["cost_usd"], row["requests"]) for row in rows]
        assert spent == sorted(spent, reverse=True)  # most spent first
    carried = {name: sum(name in e.properties for e in events) for name in ("feature", "tier")}
    names = ask(store, project, "project_property_names")
    assert names == [{"property": n, "requests": carried[n]} for n in sorted(carried,
                     key=lambda n: -carried[n])]  # fmt: skip
    assert ask(store, project, "project_usage_by_property", property="nobody-sets-this") == [
        {"value": "", **expected_usage({"": events})[""]}
    ]


def test_usage_by_end_user_matches_the_data_set_exactly_and_is_limited(
    stored: tuple[AnalyticsStore, uuid.UUID, list[RequestCompleted]],
) -> None:
    store, project, events = stored
    groups: dict[str, list[RequestCompleted]] = defaultdict(list)
    for event in events:
        groups[event.end_user or ""].append(event)
    rows = ask(store, project, "project_usage_by_end_user", limit=1000)
    assert measured(rows, "end_user") == expected_usage(groups)
    top = ask(store, project, "project_usage_by_end_user", limit=2)
    by_spend = sorted(groups, key=lambda user: -sum(e.cost_usd for e in groups[user]))
    assert [row["end_user"] for row in top] == by_spend[:2]


def test_the_request_log_filters_by_property_and_end_user(
    stored: tuple[AnalyticsStore, uuid.UUID, list[RequestCompleted]],
) -> None:
    store, project, events = stored

    def ids(**filters: Any) -> set[str]:
        rows = ask(store, project, "project_request_log", limit=500, **filters)
        count = ask(store, project, "project_request_log_count", **filters)[0]["requests"]
        assert count == len(rows)
        return {row["request_id"] for row in rows}

    def wanted(keep: Any) -> set[str]:
        return {event.request_id for event in events if keep(event)}

    assert ids(property="feature", property_value="chat") == wanted(
        lambda e: e.properties.get("feature") == "chat"
    )
    assert ids(property="tier") == wanted(lambda e: "tier" in e.properties)  # any value
    assert ids(end_user="ü-user 7") == wanted(lambda e: e.end_user == "ü-user 7")
    assert ids(end_user="grace", property="tier", property_value="gold") == wanted(
        lambda e: e.end_user == "grace" and e.properties.get("tier") == "gold"
    )
    assert ids(property="feature", property_value="no-such-value") == set()
    (row,) = ask(store, project, "project_request_log", limit=1, search=events[0].request_id)
    assert (row["properties"], row["end_user"]) == (events[0].properties, events[0].end_user or "")


def test_another_project_with_the_same_names_and_users_never_shows(
    stored: tuple[AnalyticsStore, uuid.UUID, list[RequestCompleted]],
) -> None:
    store, project, events = stored
    nobody = uuid.uuid4()  # a project without requests reads nothing at all
    assert ask(store, nobody, "project_usage_by_end_user") == []
    assert ask(store, nobody, "project_usage_by_property", property="feature") == []
    assert ask(store, nobody, "project_property_names") == []
    assert ask(store, nobody, "project_request_log_count", end_user="ada") == [{"requests": 0}]
    users = ask(store, project, "project_usage_by_end_user", limit=1000)
    assert sum(row["requests"] for row in users) == len(events)  # the other's 300 are not in


@pytest.mark.parametrize(
    "bad",
    [
        {"property": "Feature"},  # stored lower case: this could never match
        {"property": "a b"},
        {"property": "x" * 65},
        {"property": "feature' OR 1=1 --"},
        {"property_value": "chat"},  # a value without its property
        {"end_user": "u" * 257},
    ],
)
def test_bad_filters_are_refused_before_clickhouse(bad: dict[str, Any]) -> None:
    window = {"project_id": str(uuid.uuid4()), **{k: v.isoformat() for k, v in WINDOW.items()}}
    with pytest.raises(ValidationError):
        ANALYTICS_QUERIES["project_request_log"].bind({**window, **bad})
    if "property" in bad:
        with pytest.raises(ValidationError):
            ANALYTICS_QUERIES["project_usage_by_property"].bind({**window, **bad})
