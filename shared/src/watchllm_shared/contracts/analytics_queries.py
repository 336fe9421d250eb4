"""The dashboard's read-only analytics queries: one set of definitions for both read paths.

- ClickHouse server: the dashboard runs ``query.sql`` itself, as a read-only user, with
  ``parameters=query.bind(raw)`` (clickhouse-connect's ``client.query``).
- Embedded chdb: only the analytics service may open the chdb path, so the dashboard
  POSTs the same parameters to the analytics service (``POST /v1/queries/{name}``),
  which runs the same definition and answers a :class:`QueryResult`.

Every value reaches ClickHouse as a server-side query parameter (``{name:Type}`` in the
SQL); nothing from a caller is ever formatted into SQL text. Parameters are validated
by a pydantic model first (types, ranges, span limits).

The SQL reads ``requests``, the request log whose schema the analytics service owns
(its migrations). Queries over hours read the table's hourly aggregate projection
(``project_id, toStartOfHour(occurred_at), model``), so they stay fast at millions of
rows: they filter on whole hours and use exactly the projection's aggregate functions.
Changing an aggregate here means changing the projection there.

Rows need no ``FINAL``: the writer never inserts an event id that is already stored
(see ``watchllm_analytics.writer``); the table's replacing engine is only a backstop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

REQUEST_LOG_TABLE = "requests"
MAX_RANGE = timedelta(days=400)


class TimeSpan(BaseModel):
    """``start`` to ``end`` in UTC (naive means UTC), ordered, at most ``MAX_RANGE``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered_and_bounded(self) -> Self:
        start, end = _utc(self.start), _utc(self.end)
        if end < start:
            raise ValueError("end is before start")
        if end - start > MAX_RANGE:
            raise ValueError(f"range longer than {MAX_RANGE.days} days")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        return self


class HourRange(TimeSpan):
    """Whole hours from the hour of ``start`` to the hour of ``end``, both included (UTC)."""


class ProjectHourRange(HourRange):
    project_id: UUID


class ProjectModelHourRange(ProjectHourRange):
    model: str = Field(min_length=1, max_length=200)


class ProjectKeyHourRange(ProjectHourRange):
    key_id: UUID
    model: str = Field(default="", max_length=200, description="'' for every model")


class RequestFilter(TimeSpan):
    """One project's requests between two instants, filtered by exact matches; '' (or
    null for ``key_id``) means "any". ``search`` matches a request, trace or event id."""

    project_id: UUID
    status: str = Field(default="", max_length=40)
    model: str = Field(default="", max_length=200)
    key_id: UUID | None = None
    search: str = Field(default="", max_length=200)


class RequestLogParams(RequestFilter):
    """A page of the filtered request log, newest first."""

    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=50, ge=1, le=500)


class ProjectTopParams(ProjectHourRange):
    limit: int = Field(default=50, ge=1, le=500)


class RecentRequestsParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: UUID
    limit: int = Field(default=100, ge=1, le=1000)
    errors_only: bool = False


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    name: str
    description: str
    params: type[BaseModel]
    sql: str

    def bind(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validated parameters for ``client.query(self.sql, parameters=...)``.

        Raises ``pydantic.ValidationError`` for anything the definition does not accept.
        """
        return self.params.model_validate(dict(raw)).model_dump()

    @property
    def describe_sql(self) -> str:
        """The result's column names and types, even when no row matches: chdb sends no
        names or types with an empty result, so readers ask this once and keep it."""
        return f"DESCRIBE TABLE ({self.sql})"


class QueryResult(BaseModel):
    """What ``POST /v1/queries/{name}`` answers. JSON encodes Decimal (money, exact) and
    UUID as strings and datetimes as ISO 8601 in UTC; ``types`` are ClickHouse's."""

    model_config = ConfigDict(frozen=True)

    name: str
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


# The aggregate columns the usage queries return; they match the projection exactly.
_TOTALS = """
    count() AS requests,
    countIf(status != 'ok') AS errors,
    countIf(cache = 'hit') AS cache_hits,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(cost_usd) AS cost_usd,
    sum(cost_saved_usd) AS cost_saved_usd"""
_USAGE = f"""{_TOTALS},
    quantiles(0.5, 0.95, 0.99)(latency_ms) AS latency_quantiles,
    latency_quantiles[1] AS latency_p50_ms,
    latency_quantiles[2] AS latency_p95_ms,
    latency_quantiles[3] AS latency_p99_ms"""

_PROJECT_HOURS = """
    project_id = {project_id:UUID}
    AND toStartOfHour(occurred_at)
        BETWEEN toStartOfHour({start:DateTime('UTC')}) AND toStartOfHour({end:DateTime('UTC')})"""

_ALL_HOURS = """
    toStartOfHour(occurred_at)
        BETWEEN toStartOfHour({start:DateTime('UTC')}) AND toStartOfHour({end:DateTime('UTC')})"""

_QUERIES = (
    AnalyticsQuery(
        name="project_totals",
        description="One project's totals over whole hours.",
        params=ProjectHourRange,
        sql=f"SELECT {_USAGE}\nFROM requests\nWHERE {_PROJECT_HOURS}",
    ),
    AnalyticsQuery(
        name="project_usage_by_hour",
        description="One project's usage per hour (hours without requests are absent).",
        params=ProjectHourRange,
        sql=f"SELECT toStartOfHour(occurred_at) AS hour, {_USAGE}\nFROM requests\n"
        f"WHERE {_PROJECT_HOURS}\nGROUP BY hour ORDER BY hour",
    ),
    AnalyticsQuery(
        name="project_usage_by_model",
        description="One project's usage per model over whole hours.",
        params=ProjectHourRange,
        sql=f"SELECT model, {_USAGE}\nFROM requests\n"
        f"WHERE {_PROJECT_HOURS}\nGROUP BY model ORDER BY requests DESC, model",
    ),
    AnalyticsQuery(
        name="project_usage_by_model_and_hour",
        description="One project's usage per model and hour.",
        params=ProjectHourRange,
        sql=f"SELECT toStartOfHour(occurred_at) AS hour, model, {_USAGE}\nFROM requests\n"
        f"WHERE {_PROJECT_HOURS}\nGROUP BY hour, model ORDER BY hour, model",
    ),
    AnalyticsQuery(
        name="usage_by_project",
        description="Every project's usage over whole hours (operators' overview); latency"
        " quantiles are per project (project_totals): merging them for every project and"
        " hour would cost most of this query's time.",
        params=HourRange,
        sql=f"SELECT project_id, {_TOTALS}\nFROM requests\n"
        f"WHERE {_ALL_HOURS}\nGROUP BY project_id ORDER BY cost_usd DESC, project_id",
    ),
    AnalyticsQuery(
        name="project_errors",
        description="One project's failed requests by status and error type.",
        params=ProjectHourRange,
        sql="SELECT status, error_type, http_status, count() AS requests\nFROM requests\n"
        f"WHERE {_PROJECT_HOURS} AND status != 'ok'\n"
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
_LOG_WHERE = """
    project_id = {project_id:UUID}
    AND occurred_at BETWEEN {start:DateTime64(3, 'UTC')} AND {end:DateTime64(3, 'UTC')}
    AND ({status:String} = '' OR status = {status:String})
    AND ({model:String} = '' OR model = {model:String})
    AND ({key_id:Nullable(UUID)} IS NULL OR key_id = {key_id:Nullable(UUID)})
    AND ({search:String} = '' OR request_id = {search:String} OR trace_id = {search:String}
         OR toString(event_id) = {search:String})"""
_KEY_HOURS = f"""{_PROJECT_HOURS}
    AND key_id = {{key_id:UUID}} AND ({{model:String}} = '' OR model = {{model:String}})"""
_LOG_COLUMNS = """event_id, occurred_at, request_id, key_id, model, provider, endpoint,
    http_status, status, error_type, cache, cache_similarity, stream, prompt_tokens,
    completion_tokens, cost_usd, cost_saved_usd, latency_ms, upstream_latency_ms, ttfb_ms,
    trace_id, upstream_attempts"""

_DASHBOARD_QUERIES = (
    AnalyticsQuery(
        name="project_model_usage_by_hour",
        description="One project's usage of one model per hour (reads the projection).",
        params=ProjectModelHourRange,
        sql=f"SELECT toStartOfHour(occurred_at) AS hour, {_USAGE}\nFROM requests\n"
        f"WHERE {_PROJECT_HOURS} AND model = {{model:String}}\nGROUP BY hour ORDER BY hour",
    ),
    AnalyticsQuery(
        name="project_key_usage_by_hour",
        description="One key's usage per hour, optionally of one model ('' for all).",
        params=ProjectKeyHourRange,
        sql=f"SELECT toStartOfHour(occurred_at) AS hour, {_USAGE}\nFROM requests\n"
        f"WHERE {_KEY_HOURS}\nGROUP BY hour ORDER BY hour",
    ),
    AnalyticsQuery(
        name="project_key_totals",
        description="One key's totals over whole hours, optionally of one model ('' for all).",
        params=ProjectKeyHourRange,
        sql=f"SELECT {_USAGE}\nFROM requests\nWHERE {_KEY_HOURS}",
    ),
    AnalyticsQuery(
        name="project_outcomes_by_hour",
        description="One project's outcomes per hour: rate limited (429), errors, and cache"
        " hits by layer (a semantic hit carries its similarity, an exact hit none).",
        params=ProjectHourRange,
        sql="SELECT toStartOfHour(occurred_at) AS hour, count() AS requests,\n"
        "    countIf(status = 'ok') AS ok,\n"
        "    countIf(status = 'rate_limited') AS rate_limited,\n"
        "    countIf(status NOT IN ('ok', 'rate_limited')) AS errors,\n"
        "    countIf(cache = 'hit' AND cache_similarity IS NULL) AS exact_hits,\n"
        "    countIf(cache = 'hit' AND cache_similarity IS NOT NULL) AS semantic_hits,\n"
        "    countIf(cache = 'miss') AS misses,\n"
        "    countIf(cache = 'bypass') AS bypassed,\n"
        "    sum(cost_saved_usd) AS cost_saved_usd\n"
        f"FROM requests\nWHERE {_PROJECT_HOURS}\nGROUP BY hour ORDER BY hour",
    ),
    AnalyticsQuery(
        name="project_key_activity",
        description="Per key of one project over whole hours: requests, 429s, last use.",
        params=ProjectHourRange,
        sql="SELECT key_id, count() AS requests,\n"
        "    countIf(status = 'rate_limited') AS rate_limited,\n"
        "    max(occurred_at) AS last_used\n"
        f"FROM requests\nWHERE {_PROJECT_HOURS}\nGROUP BY key_id ORDER BY last_used DESC",
    ),
    AnalyticsQuery(
        name="project_cache_entry_hits",
        description="One project's cache entries by the hits they answered over whole"
        " hours: hits, what they saved, the last hit (most hits first).",
        params=ProjectTopParams,
        sql="SELECT cache_key, count() AS hits, sum(cost_saved_usd) AS cost_saved_usd,\n"
        "    max(occurred_at) AS last_hit\n"
        f"FROM requests\nWHERE {_PROJECT_HOURS} AND cache = 'hit' AND cache_key != ''\n"
        "GROUP BY cache_key ORDER BY hits DESC, last_hit DESC\nLIMIT {limit:UInt32}",
    ),
    AnalyticsQuery(
        name="project_request_log",
        description="A page of one project's request log, newest first, with filters.",
        params=RequestLogParams,
        sql=f"SELECT {_LOG_COLUMNS}\nFROM requests\nWHERE {_LOG_WHERE}\n"
        "ORDER BY occurred_at DESC, event_id DESC\n"
        "LIMIT {limit:UInt32} OFFSET {offset:UInt32}",
    ),
    AnalyticsQuery(
        name="project_request_log_count",
        description="How many requests the same filters match (for paging).",
        params=RequestFilter,
        sql=f"SELECT count() AS requests\nFROM requests\nWHERE {_LOG_WHERE}",
    ),
)

ANALYTICS_QUERIES: Mapping[str, AnalyticsQuery] = {
    query.name: query for query in (*_QUERIES, *_DASHBOARD_QUERIES)
}
