"""Usage by the caller's custom properties and by end user (the gateway's
``attribution``): which feature, customer or user the requests, errors and spend were for.

- ``project_usage_by_property``: one property's values (``property``, a name as the
  gateway stores it: lower case) over the window; the requests without the property
  are one more group, whose value is '' (the gateway refuses an empty value, so ''
  names no real one).
- ``project_usage_by_end_user``: per end user; '' gathers the requests that named none.
- ``project_property_names``: the property names the project's requests carried in the
  window, with how many requests carried each (most first): what to break down by.

Each group: requests, errors (status not ok, as the usage queries count them), cost,
cost saved by the cache and the latency's p50 and p95, exact (``quantilesExact``: the
value at index ⌊level × n⌋ of the group's sorted latencies); groups by cost, then
requests, the ``limit`` first. These read rows, bounded by project and time (the sort
key): the hourly projection has neither column. Both are scoped to one project like
every query: a project never reads another's properties or users.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from watchllm_shared.contracts.query_base import IN_WINDOW, PROJECT, AnalyticsQuery, ProjectSpan

# The gateway's rule for a property's name (``attribution``), lower case.
PROPERTY_NAME_PATTERN = r"^[a-z0-9._-]{1,64}$"
PropertyName = Annotated[str, StringConstraints(pattern=PROPERTY_NAME_PATTERN)]


class PropertyUsageParams(ProjectSpan):
    property: PropertyName
    limit: int = Field(default=50, ge=1, le=1000)


class EndUserUsageParams(ProjectSpan):
    limit: int = Field(default=50, ge=1, le=1000)


class PropertyNamesParams(ProjectSpan):
    limit: int = Field(default=100, ge=1, le=1000)


_GROUP_USAGE = """count() AS requests,
    countIf(status != 'ok') AS errors,
    sum(cost_usd) AS cost_usd,
    sum(cost_saved_usd) AS cost_saved_usd,
    quantilesExact(0.5, 0.95)(latency_ms)[1] AS latency_p50_ms,
    quantilesExact(0.5, 0.95)(latency_ms)[2] AS latency_p95_ms"""  # computed once


def _usage_by(group: str, name: str) -> str:
    return (
        f"SELECT {group} AS {name},\n    {_GROUP_USAGE}\n"
        f"FROM requests\nWHERE {PROJECT} AND {IN_WINDOW}\n"
        f"GROUP BY {name}\nORDER BY cost_usd DESC, requests DESC, {name}\n"
        "LIMIT {limit:UInt32}"
    )


ATTRIBUTION_QUERIES = (
    AnalyticsQuery(
        name="project_usage_by_property",
        description="One project's usage per value of one custom property over the window"
        " ('' gathers the requests without it): requests, errors, cost, cost saved, exact"
        " latency p50 and p95; the ``limit`` values that spent most.",
        params=PropertyUsageParams,
        sql=_usage_by("properties[{property:String}]", "value"),
    ),
    AnalyticsQuery(
        name="project_usage_by_end_user",
        description="One project's usage per end user over the window ('' gathers the"
        " requests that named none): requests, errors, cost, cost saved, exact latency"
        " p50 and p95; the ``limit`` users that spent most.",
        params=EndUserUsageParams,
        sql=_usage_by("end_user", "end_user"),
    ),
    AnalyticsQuery(
        name="project_property_names",
        description="The custom property names one project's requests carried over the"
        " window, with the requests that carried each, most first.",
        params=PropertyNamesParams,
        sql="SELECT arrayJoin(mapKeys(properties)) AS property, count() AS requests\n"
        f"FROM requests\nWHERE {PROJECT} AND {IN_WINDOW} AND notEmpty(properties)\n"
        "GROUP BY property ORDER BY requests DESC, property\nLIMIT {limit:UInt32}",
    ),
)
