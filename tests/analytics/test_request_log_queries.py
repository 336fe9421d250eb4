"""The request log's filters and export pages (``contracts.request_log_queries``) on real
chdb: several statuses, cache outcomes, stream and endpoints at once, pushed down into
the query; an export read page after page by the sort order, every row once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from watchllm_analytics.settings import AnalyticsSettings
from watchllm_analytics.store import AnalyticsStore, open_store
from watchllm_shared.contracts.analytics_queries import ANALYTICS_QUERIES

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
# 100 rows, three to a second (so the export's tie-break on the event id counts). By
# number % 4: 0 → 200 ok, exact hit; 1 → 429, miss; 2 → 502, bypass; 3 → 400, semantic
# hit. Even numbers asked /v1/messages, every third streamed.
ROWS = """
INSERT INTO requests (event_id, occurred_at, schema_version, request_id, project_id, key_id,
  model, provider, endpoint, http_status, status, error_type, cache, cache_similarity, stream,
  prompt_tokens, completion_tokens, cost_usd, cost_saved_usd, latency_ms, trace_id,
  upstream_attempts)
SELECT generateUUIDv4(number), {now:DateTime64(3, 'UTC')} - toIntervalSecond(intDiv(number, 3)),
  1, hex(number), {project:UUID}, generateUUIDv4(), 'gpt-4o-mini', 'openai',
  if(number % 2 = 0, '/v1/messages', '/v1/chat/completions'),
  [200, 429, 502, 400][number % 4 + 1],
  ['ok', 'rate_limited', 'upstream_error', 'client_error'][number % 4 + 1], '',
  ['hit', 'miss', 'bypass', 'hit'][number % 4 + 1], if(number % 4 = 3, 0.97, NULL),
  number % 3 = 0, 1, 1, 0, 0, 1, '', 1
FROM numbers(100)"""


@pytest.fixture
def store(settings: AnalyticsSettings) -> Iterator[tuple[AnalyticsStore, uuid.UUID]]:
    store = open_store(settings)
    project = uuid.uuid4()
    store.writer_client.command(ROWS, parameters={"project": project, "now": NOW})
    other = uuid.uuid4()  # another project's rows never count
    store.writer_client.command(ROWS, parameters={"project": other, "now": NOW})
    yield store, project
    store.close()


def ask(store: AnalyticsStore, project: uuid.UUID, name: str, **filters: Any) -> list[Any]:
    query = ANALYTICS_QUERIES[name]
    window = {"project_id": project, "start": NOW - timedelta(hours=1), "end": NOW}
    bound = query.bind({**window, **filters})
    return list(store.query_client.query(query.sql, parameters=bound).result_rows)


def count(store: AnalyticsStore, project: uuid.UUID, **filters: Any) -> int:
    return int(ask(store, project, "project_request_log_count", **filters)[0][0])


def test_several_values_of_each_filter_at_once(
    store: tuple[AnalyticsStore, uuid.UUID],
) -> None:
    db, project = store
    assert count(db, project) == 100
    assert count(db, project, statuses=["ok"]) == 25
    assert count(db, project, statuses=["4xx"]) == 50  # 429 and 400
    assert count(db, project, statuses=["429", "5xx"]) == 50
    assert count(db, project, statuses=["ok", "400"]) == 50
    assert count(db, project, caches=["exact"]) == 25  # a hit without a similarity
    assert count(db, project, caches=["semantic", "miss"]) == 50
    assert count(db, project, caches=["bypass"]) == 25
    assert count(db, project, streams=[True]) == 34
    assert count(db, project, streams=[True, False]) == 100
    assert count(db, project, endpoints=["/v1/messages"]) == 50
    # Each filter narrows the others: every ok row is an exact hit on /v1/messages.
    assert count(db, project, statuses=["ok"], caches=["exact"], endpoints=["/v1/messages"]) == 25
    assert count(db, project, statuses=["ok"], endpoints=["/v1/chat/completions"]) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"statuses": ["ok' OR 1=1 --"]},
        {"statuses": ["6xx"]},
        {"caches": ["warm"]},
        {"streams": ["maybe"]},
        {"endpoints": ["x" * 201]},
        {"statuses": ["ok"] * 31},
        {"before_at": NOW.isoformat()},  # without before_event
    ],
)
def test_bad_filters_are_refused_before_clickhouse(bad: dict[str, Any]) -> None:
    window = {"project_id": str(uuid.uuid4()), "start": (NOW - timedelta(hours=1)).isoformat(),
              "end": NOW.isoformat()}  # fmt: skip
    with pytest.raises(ValidationError):
        ANALYTICS_QUERIES["project_request_log_export"].bind({**window, **bad})


def test_an_export_reads_every_row_once_newest_first(
    store: tuple[AnalyticsStore, uuid.UUID],
) -> None:
    db, project = store
    filters = {"statuses": ["4xx", "ok"]}
    rows = ask(db, project, "project_request_log_export", limit=7, **filters)
    seen = list(rows)
    while rows:
        last = rows[-1]
        rows = ask(db, project, "project_request_log_export", limit=7, **filters,
                   before_at=last[1], before_event=last[0])  # fmt: skip
        seen += rows
    page = ask(db, project, "project_request_log", limit=500, **filters)
    assert [r[0] for r in seen] == [r[0] for r in page]  # the same order as the log
    assert len({r[0] for r in seen}) == 75
