"""The request log's queries: one project's requests in a window, filtered, as a page
(newest first), as a count, and page after page for an export.

Filters are exact matches pushed down into the query; an empty value means "any":

- ``statuses`` (any of): ``ok`` (the gateway's ``status`` is ok), a class of HTTP status
  (``4xx``, ``5xx``) or one code (``429``);
- ``caches`` (any of): ``exact`` (a hit with no similarity), ``semantic`` (a hit with
  one), ``miss``, ``bypass`` (the cache stayed out);
- ``streams`` (any of): true, false; ``endpoints`` (any of): the path asked
  (``/v1/chat/completions``);
- ``model`` and ``key_id`` (one each); ``search``: the start of a request, trace or
  event id (a whole id is one too), matched as text: no character is a wildcard;
- ``property`` and ``property_value``: the requests with that custom property
  (``x-watchllm-property-<name>``), of that value when one is given (a value needs a
  name); ``end_user``: one end user's requests (exact).

Each list is validated (its length, each value's form) and bound as an array parameter
(``{statuses:Array(String)}``), never formatted into SQL. These read rows (the hourly
projection has none of these columns), bounded by project and time, the table's sort
key.

The export pages by the sort order itself, not by offset: each page asks for the rows
older than the last one it got (``before_at``, ``before_event``), so page N costs what
page 1 does. A page is at most ``MAX_EXPORT_PAGE`` rows; the dashboard bounds the whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import Field, StringConstraints, model_validator

from watchllm_shared.contracts.attribution_queries import PropertyName
from watchllm_shared.contracts.query_base import IN_WINDOW, PROJECT, AnalyticsQuery, TimeSpan

MAX_EXPORT_PAGE = 10_000
STATUS_PATTERN = r"^(ok|[1-5]xx|[1-5][0-9][0-9])$"

Status = Annotated[str, StringConstraints(pattern=STATUS_PATTERN)]
Endpoint = Annotated[str, StringConstraints(min_length=1, max_length=200)]
CacheChoice = Literal["exact", "semantic", "miss", "bypass"]


class RequestFilter(TimeSpan):
    """One project's requests between two instants, filtered (see the module docstring);
    an empty list, '' or null means "any"."""

    project_id: UUID
    statuses: list[Status] = Field(default_factory=list, max_length=30)
    caches: list[CacheChoice] = Field(default_factory=list, max_length=4)
    streams: list[bool] = Field(default_factory=list, max_length=2)
    endpoints: list[Endpoint] = Field(default_factory=list, max_length=20)
    model: str = Field(default="", max_length=200)
    key_id: UUID | None = None
    search: str = Field(default="", max_length=200)
    property: PropertyName | Literal[""] = ""
    property_value: str = Field(default="", max_length=256)
    end_user: str = Field(default="", max_length=256)

    @model_validator(mode="after")
    def _value_of_a_property(self) -> Self:
        if self.property_value and not self.property:
            raise ValueError("property_value needs the property it is the value of")
        return self


class RequestLogParams(RequestFilter):
    """A page of the filtered request log, newest first."""

    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=50, ge=1, le=500)


class RequestExportParams(RequestFilter):
    """The next page of an export: the ``limit`` newest rows older than the last row of
    the page before (``before_at`` and ``before_event`` together; neither for the first)."""

    before_at: datetime | None = None
    before_event: UUID | None = None
    limit: int = Field(default=5_000, ge=1, le=MAX_EXPORT_PAGE)

    @model_validator(mode="after")
    def _cursor_whole(self) -> Self:
        if (self.before_at is None) != (self.before_event is None):
            raise ValueError("before_at and before_event go together")
        return self


_LOG_WHERE = f"""
    {PROJECT}
    AND {IN_WINDOW}
    AND (empty({{statuses:Array(String)}})
         OR (status = 'ok' AND has({{statuses:Array(String)}}, 'ok'))
         OR has({{statuses:Array(String)}}, concat(toString(intDiv(http_status, 100)), 'xx'))
         OR has({{statuses:Array(String)}}, toString(http_status)))
    AND (empty({{caches:Array(String)}})
         OR has({{caches:Array(String)}}, multiIf(cache != 'hit', toString(cache),
                cache_similarity IS NULL, 'exact', 'semantic')))
    AND (empty({{streams:Array(Bool)}}) OR has({{streams:Array(Bool)}}, stream))
    AND (empty({{endpoints:Array(String)}}) OR has({{endpoints:Array(String)}}, toString(endpoint)))
    AND ({{model:String}} = '' OR model = {{model:String}})
    AND ({{key_id:Nullable(UUID)}} IS NULL OR key_id = {{key_id:Nullable(UUID)}})
    AND ({{search:String}} = '' OR startsWith(request_id, {{search:String}})
         OR startsWith(trace_id, {{search:String}})
         OR startsWith(toString(event_id), {{search:String}}))
    AND ({{property:String}} = '' OR (mapContains(properties, {{property:String}})
         AND ({{property_value:String}} = ''
              OR properties[{{property:String}}] = {{property_value:String}})))
    AND ({{end_user:String}} = '' OR end_user = {{end_user:String}})"""
_BEFORE_AT = "{before_at:Nullable(DateTime64(3, 'UTC'))}"
_BEFORE_EVENT = "{before_event:Nullable(UUID)}"
_OLDER = f"""({_BEFORE_AT} IS NULL OR occurred_at < {_BEFORE_AT}
         OR (occurred_at = {_BEFORE_AT} AND event_id < {_BEFORE_EVENT}))"""
LOG_COLUMNS = """event_id, occurred_at, request_id, key_id, model, provider, endpoint,
    http_status, status, error_type, cache, cache_similarity, stream, prompt_tokens,
    completion_tokens, cost_usd, cost_saved_usd, latency_ms, upstream_latency_ms, ttfb_ms,
    trace_id, upstream_attempts, unpriced, end_user, properties"""
_NEWEST_FIRST = "ORDER BY occurred_at DESC, event_id DESC"

REQUEST_LOG_QUERIES = (
    AnalyticsQuery(
        name="project_request_log",
        description="A page of one project's request log, newest first, with filters.",
        params=RequestLogParams,
        sql=f"SELECT {LOG_COLUMNS}\nFROM requests\nWHERE {_LOG_WHERE}\n{_NEWEST_FIRST}\n"
        "LIMIT {limit:UInt32} OFFSET {offset:UInt32}",
    ),
    AnalyticsQuery(
        name="project_request_log_count",
        description="How many requests the same filters match (for paging).",
        params=RequestFilter,
        sql=f"SELECT count() AS requests\nFROM requests\nWHERE {_LOG_WHERE}",
    ),
    AnalyticsQuery(
        name="project_request_log_export",
        description="The next page of an export of the filtered request log, newest first:"
        " the rows older than (before_at, before_event), none for the first page.",
        params=RequestExportParams,
        sql=f"SELECT {LOG_COLUMNS}\nFROM requests\nWHERE {_LOG_WHERE}\n    AND {_OLDER}\n"
        f"{_NEWEST_FIRST}\nLIMIT {{limit:UInt32}}",
    ),
)
