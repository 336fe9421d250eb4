"""The dashboard's read-only analytics queries: one set of definitions for both read paths.

- ClickHouse server: the dashboard runs ``query.sql`` itself, as a read-only user, with
  ``parameters=query.bind(raw)`` (clickhouse-connect's ``client.query``).
- Embedded chdb: only the analytics service may open the chdb path, so the dashboard
  POSTs the same parameters to the analytics service (``POST /v1/queries/{name}``),
  which runs the same definition and answers a :class:`QueryResult`.

Every value reaches ClickHouse as a server-side query parameter (``{name:Type}`` in the
SQL); nothing from a caller is ever formatted into SQL text. Parameters are validated
by a pydantic model first (types, ranges, span limits). What a definition is made of
lives in ``query_base``; the request log's queries (filters, page, count, export) in
``request_log_queries``; usage by custom property and end user in
``attribution_queries``; this module holds the usage queries and the catalog.

The SQL reads ``requests``, the request log whose schema the analytics service owns
(its migrations). Every window is exact: from ``start`` to ``end``, both included, to the
millisecond ("the last hour" is the last 60 minutes, not the hour so far).

Speed: usage queries read the table's hourly aggregate projection (``project_id,
toStartOfHour(occurred_at), model``), so they stay fast at millions of rows. The
projection only knows whole hours, so such a query is a ``UNION ALL`` of two reads
(``_split``): the whole hours inside the window from the projection (with exactly the
projection's aggregate functions; changing an aggregate here means changing the
projection there), and the partial hours at the window's two ends from the rows (at
most two hours of rows). Per-hour results need no merging (an hour is read by one side
only); totals add the two sides' counts and sums. Latency percentiles cannot be added
up, so the totals' and the per-model percentiles are over the whole hours the window
touches (``_TOUCHED_HOURS``, the projection alone); the dashboard says so where it shows
them. Per-hour percentiles, and those of queries that read rows anyway (a key filter),
are exact.

Rows need no ``FINAL``: the writer never inserts an event id that is already stored
(see ``watchllm_analytics.writer``); the table's replacing engine is only a backstop.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from watchllm_shared.contracts.attribution_queries import ATTRIBUTION_QUERIES
from watchllm_shared.contracts.body_queries import BODY_QUERIES
from watchllm_shared.contracts.query_base import (
    END,
    IN_WINDOW,
    MAX_RANGE,
    PROJECT,
    REQUEST_LOG_TABLE,
    START,
    AnalyticsQuery,
    ProjectSpan,
    QueryResult,
    TimeSpan,
)
from watchllm_shared.contracts.request_log_queries import REQUEST_LOG_QUERIES
from watchllm_shared.contracts.routing_queries import ROUTING_QUERIES

__all__ = ["ANALYTICS_QUERIES", "MAX_RANGE", "REQUEST_LOG_TABLE", "AnalyticsQuery", "QueryResult",
           "TimeSpan"]  # fmt: skip


class ProjectModelSpan(ProjectSpan):
    model: str = Field(min_length=1, max_length=200)


class ProjectKeySpan(ProjectSpan):
    key_id: UUID
    model: str = Field(default="", max_length=200, description="'' for every model")


class ProjectKeyFilter(ProjectSpan):
    model: str = Field(default="", max_length=200, description="'' for every model")
    key_id: UUID | None = Field(default=None, description="null for every key")


class ProjectTopParams(ProjectSpan):
    limit: int = Field(default=50, ge=1, le=500)


class RecentRequestsParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: UUID
    limit: int = Field(default=100, ge=1, le=1000)
    errors_only: bool = False


# The aggregate columns the usage queries return; they match the projection exactly.
_TOTALS = """
    count() AS requests,
    countIf(status != 'ok') AS errors,
    countIf(cache = 'hit') AS cache_hits,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(cost_usd) AS cost_usd,
    sum(cost_saved_usd) AS cost_saved_usd"""
_TOTAL_NAMES = ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens",
                "cost_usd", "cost_saved_usd")  # fmt: skip
_QUANTILES = "quantiles(0.5, 0.95, 0.99)(latency_ms) AS latency_quantiles"
_PERCENTILES = """latency_quantiles[1] AS latency_p50_ms,
    latency_quantiles[2] AS latency_p95_ms,
    latency_quantiles[3] AS latency_p99_ms"""
_USAGE = f"""{_TOTALS},
    {_QUANTILES},
    {_PERCENTILES}"""
# Sums of the two sides' counts and sums (``_split``), under the same names.
_SUMMED = ",\n    ".join(f"sum({name}) AS {name}" for name in _TOTAL_NAMES)

# The whole hours inside the window: from the first hour that starts at or after
# ``start`` up to, not including, the hour of ``end`` (which ends after ``end``).
_FIRST_WHOLE_HOUR = f"toStartOfHour({START} + INTERVAL 3599999 MILLISECOND)"
_LAST_HOUR = f"toStartOfHour({END})"
_WHOLE_HOURS = f"""toStartOfHour(occurred_at) >= {_FIRST_WHOLE_HOUR}
    AND toStartOfHour(occurred_at) < {_LAST_HOUR}"""
_EDGE_ROWS = f"""{IN_WINDOW}
    AND (occurred_at < {_FIRST_WHOLE_HOUR} OR occurred_at >= {_LAST_HOUR})"""
# Every hour the window touches, whole (the projection alone): for percentiles.
_TOUCHED_HOURS = f"""toStartOfHour(occurred_at)
        BETWEEN toStartOfHour({START}) AND toStartOfHour({END})"""


def _split(columns: str, scope: str, keys: str = "", group: str = "") -> str:
    """``SELECT keys, columns FROM requests WHERE scope AND <the window>``, as the whole
    hours (projection) ``UNION ALL`` the partial hours at the ends (rows), each side
    grouped by ``group``. The two sides never read the same row."""
    select = f"SELECT {keys + ', ' if keys else ''}{columns}\nFROM requests\nWHERE {scope}"
    grouped = f"\nGROUP BY {group}" if group else ""
    return (
        f"{select}\n    AND {_WHOLE_HOURS}{grouped}\n"
        f"UNION ALL\n{select}\n    AND {_EDGE_ROWS}{grouped}"
    )


def _by_hour(scope: str, keys: str = "", order: str = "hour") -> str:
    """Usage per hour (and ``keys``) over the window: each hour is read by one side only."""
    names = ", ".join(["hour", *(k.split(" AS ")[-1] for k in keys.split(", ") if k)])
    hour = "toStartOfHour(occurred_at) AS hour" + (f", {keys}" if keys else "")
    return f"SELECT *\nFROM (\n{_split(_USAGE, scope, hour, names)}\n)\nORDER BY {order}"


_QUERIES = (
    AnalyticsQuery(
        name="project_totals",
        description="One project's totals over the window; latency percentiles over the"
        " whole hours it touches.",
        params=ProjectSpan,
        sql=f"SELECT *, {_PERCENTILES}\n"
        f"FROM (\nSELECT {_SUMMED}\nFROM (\n{_split(_TOTALS, PROJECT)}\n)\n) AS counted\n"
        f"CROSS JOIN (\nSELECT {_QUANTILES}\nFROM requests\n"
        f"WHERE {PROJECT} AND {_TOUCHED_HOURS}\n) AS touched",
    ),
    AnalyticsQuery(
        name="project_usage_by_hour",
        description="One project's usage per hour of the window (hours without requests are"
        " absent; the first and last hour only as far as the window covers them).",
        params=ProjectSpan,
        sql=_by_hour(PROJECT),
    ),
    AnalyticsQuery(
        name="project_usage_by_model",
        description="One project's usage per model over the window; latency percentiles"
        " over the whole hours it touches.",
        params=ProjectSpan,
        sql=f"SELECT *, {_PERCENTILES}\n"
        f"FROM (\nSELECT model, {_SUMMED}\n"
        f"FROM (\n{_split(_TOTALS, PROJECT, 'model', 'model')}\n)\nGROUP BY model\n) AS counted\n"
        f"LEFT JOIN (\nSELECT model, {_QUANTILES}\nFROM requests\n"
        f"WHERE {PROJECT} AND {_TOUCHED_HOURS}\nGROUP BY model\n) AS touched USING model\n"
        "ORDER BY requests DESC, model",
    ),
    AnalyticsQuery(
        name="project_usage_by_model_and_hour",
        description="One project's usage per model and hour of the window.",
        params=ProjectSpan,
        sql=_by_hour(PROJECT, "model", "hour, model"),
    ),
    AnalyticsQuery(
        name="usage_by_project",
        description="Every project's usage over the window (operators' overview); latency"
        " quantiles are per project (project_totals): merging them for every project and"
        " hour would cost most of this query's time.",
        params=TimeSpan,
        sql=f"SELECT project_id, {_SUMMED}\n"
        f"FROM (\n{_split(_TOTALS, 'true', 'project_id', 'project_id')}\n)\n"
        "GROUP BY project_id ORDER BY cost_usd DESC, project_id",
    ),
    AnalyticsQuery(
        name="project_errors",
        description="One project's failed requests by status and error type.",
        params=ProjectSpan,
        sql="SELECT status, error_type, http_status, count() AS requests\nFROM requests\n"
        f"WHERE {PROJECT} AND {IN_WINDOW} AND status != 'ok'\n"
        "GROUP BY status, error_type, http_status ORDER BY requests DESC",
    ),
    AnalyticsQuery(
        name="project_recent_requests",
        description="One project's latest requests, newest first.",
        params=RecentRequestsParams,
        sql="SELECT event_id, occurred_at, request_id, key_id, model, provider, endpoint,\n"
        "    http_status, status, error_type, cache, cache_similarity, stream,\n"
        "    prompt_tokens, completion_tokens, cost_usd, cost_saved_usd, latency_ms,\n"
        "    upstream_latency_ms, ttfb_ms, trace_id\nFROM requests\n"
        "WHERE project_id = {project_id:UUID} AND ({errors_only:Bool} = false OR status != 'ok')\n"
        "ORDER BY occurred_at DESC LIMIT {limit:UInt32}",
    ),
)

# The dashboard's filtered and raw-row questions. Those filtering on a key, a status or
# a cache layer read rows (the projection has no such columns); they are bounded by
# project and time, the table's sort key, so they scan only that slice.
_PROJECT_WINDOW = f"{PROJECT} AND {IN_WINDOW}"
_KEY_WINDOW = f"""{_PROJECT_WINDOW}
    AND key_id = {{key_id:UUID}} AND ({{model:String}} = '' OR model = {{model:String}})"""
_DASHBOARD_QUERIES = (
    AnalyticsQuery(
        name="project_model_usage_by_hour",
        description="One project's usage of one model per hour of the window (reads the"
        " projection for the whole hours).",
        params=ProjectModelSpan,
        sql=_by_hour(f"{PROJECT} AND model = {{model:String}}"),
    ),
    AnalyticsQuery(
        name="project_key_usage_by_hour",
        description="One key's usage per hour, optionally of one model ('' for all).",
        params=ProjectKeySpan,
        sql=f"SELECT toStartOfHour(occurred_at) AS hour, {_USAGE}\nFROM requests\n"
        f"WHERE {_KEY_WINDOW}\nGROUP BY hour ORDER BY hour",
    ),
    AnalyticsQuery(
        name="project_key_totals",
        description="One key's totals over the window, optionally of one model ('' for all).",
        params=ProjectKeySpan,
        sql=f"SELECT {_USAGE}\nFROM requests\nWHERE {_KEY_WINDOW}",
    ),
    AnalyticsQuery(
        name="project_outcomes_by_hour",
        description="One project's outcomes per hour: rate limited (429), errors, and cache"
        " hits by layer (a semantic hit carries its similarity, an exact hit none).",
        params=ProjectSpan,
        sql="SELECT toStartOfHour(occurred_at) AS hour, count() AS requests,\n"
        "    countIf(status = 'ok') AS ok,\n"
        "    countIf(status = 'rate_limited') AS rate_limited,\n"
        "    countIf(status NOT IN ('ok', 'rate_limited')) AS errors,\n"
        "    countIf(cache = 'hit' AND cache_similarity IS NULL) AS exact_hits,\n"
        "    countIf(cache = 'hit' AND cache_similarity IS NOT NULL) AS semantic_hits,\n"
        "    countIf(cache = 'miss') AS misses,\n"
        "    countIf(cache = 'bypass') AS bypassed,\n"
        "    sum(cost_saved_usd) AS cost_saved_usd\n"
        f"FROM requests\nWHERE {_PROJECT_WINDOW}\nGROUP BY hour ORDER BY hour",
    ),
    AnalyticsQuery(
        name="project_key_activity",
        description="Per key of one project over the window: requests, 429s, last use.",
        params=ProjectSpan,
        sql="SELECT key_id, count() AS requests,\n"
        "    countIf(status = 'rate_limited') AS rate_limited,\n"
        "    max(occurred_at) AS last_used\n"
        f"FROM requests\nWHERE {_PROJECT_WINDOW}\nGROUP BY key_id ORDER BY last_used DESC",
    ),
    AnalyticsQuery(
        name="project_usage_by_key_and_model",
        description="Per key and model of one project over the window: requests, tokens,"
        " spend, what the cache saved, and requests to models without a price; the"
        " ``limit`` pairs that spent most. Reads rows: the projection has no key.",
        params=ProjectTopParams,
        sql="SELECT key_id, model, count() AS requests,\n"
        "    sum(prompt_tokens) AS prompt_tokens,\n"
        "    sum(completion_tokens) AS completion_tokens,\n"
        "    sum(cost_usd) AS cost_usd,\n"
        "    sum(cost_saved_usd) AS cost_saved_usd,\n"
        "    countIf(unpriced) AS unpriced_requests\n"
        f"FROM requests\nWHERE {_PROJECT_WINDOW}\n"
        "GROUP BY key_id, model\n"
        "ORDER BY cost_usd DESC, requests DESC, key_id, model\nLIMIT {limit:UInt32}",
    ),
    AnalyticsQuery(
        name="project_cache_entry_hits",
        description="One project's cache entries by the hits they answered over the window:"
        " hits, what they saved, the last hit (most hits first).",
        params=ProjectTopParams,
        sql="SELECT cache_key, count() AS hits, sum(cost_saved_usd) AS cost_saved_usd,\n"
        "    max(occurred_at) AS last_hit\n"
        f"FROM requests\nWHERE {_PROJECT_WINDOW} AND cache = 'hit' AND cache_key != ''\n"
        "GROUP BY cache_key ORDER BY hits DESC, last_hit DESC\nLIMIT {limit:UInt32}",
    ),
    AnalyticsQuery(
        name="project_refusals_and_unpriced",
        description="Per hour and model: the project's own 429s (not errors of the service),"
        " and requests to models without a price (their cost reads 0), with their tokens;"
        " optionally of one model ('' for all) and one key (null for all). Reads rows:"
        " the projection counts neither.",
        params=ProjectKeyFilter,
        sql="SELECT toStartOfHour(occurred_at) AS hour, model,\n"
        "    countIf(status = 'rate_limited') AS rate_limited,\n"
        "    countIf(unpriced) AS unpriced_requests,\n"
        "    sumIf(prompt_tokens + completion_tokens, unpriced) AS unpriced_tokens\n"
        f"FROM requests\nWHERE {_PROJECT_WINDOW}\n"
        "    AND ({model:String} = '' OR model = {model:String})\n"
        "    AND ({key_id:Nullable(UUID)} IS NULL OR key_id = {key_id:Nullable(UUID)})\n"
        "    AND (status = 'rate_limited' OR unpriced)\n"
        "GROUP BY hour, model ORDER BY hour, model",
    ),
    AnalyticsQuery(
        name="refusals_and_unpriced_by_project",
        description="Per project over the window: its own 429s and its requests to models"
        " without a price (reads rows).",
        params=TimeSpan,
        sql="SELECT project_id, countIf(status = 'rate_limited') AS rate_limited,\n"
        "    countIf(unpriced) AS unpriced_requests\nFROM requests\n"
        f"WHERE {IN_WINDOW} AND (status = 'rate_limited' OR unpriced)\n"
        "GROUP BY project_id ORDER BY project_id",
    ),
)

ANALYTICS_QUERIES: Mapping[str, AnalyticsQuery] = {
    query.name: query
    for query in (
        *_QUERIES, *_DASHBOARD_QUERIES, *REQUEST_LOG_QUERIES, *ATTRIBUTION_QUERIES,
        *ROUTING_QUERIES, *BODY_QUERIES,
    )
}  # fmt: skip
