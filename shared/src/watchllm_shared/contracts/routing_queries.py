"""Traffic per upstream deployment (the gateway's ``routing``): which of the routes
file's deployments answered one project's requests, how often they failed, how fast
they were and how many answers came from a fallback model.

- ``project_usage_by_deployment``: per ``deployment`` (the events' field since
  analytics migration 0005) over the window: requests, errors (status not ok, as the
  usage queries count them), fallbacks (answered for a fallback model: ``fallback_model``
  set), retried (more than one upstream attempt), exact latency p50 and p95 (whole
  request) and the upstream's p50, busiest first, the ``limit`` first. Requests no
  deployment answered (cache hits, refusals before dispatch, a 429 because every
  deployment was full) have no deployment and are left out; so are rows written before
  the column existed.

It reads rows, bounded by project and time (the sort key): the hourly projection has
no deployment. Scoped to one project like every query.
"""

from __future__ import annotations

from pydantic import Field

from watchllm_shared.contracts.query_base import IN_WINDOW, PROJECT, AnalyticsQuery, ProjectSpan


class DeploymentUsageParams(ProjectSpan):
    limit: int = Field(default=100, ge=1, le=1000)


ROUTING_QUERIES = (
    AnalyticsQuery(
        name="project_usage_by_deployment",
        description="One project's requests per upstream deployment over the window:"
        " requests, errors, fallbacks, retried, exact latency p50 and p95 and upstream"
        " p50; busiest first. Requests no deployment answered are left out.",
        params=DeploymentUsageParams,
        sql="SELECT deployment, any(provider) AS provider,\n"
        "    count() AS requests,\n"
        "    countIf(status != 'ok') AS errors,\n"
        "    countIf(fallback_model != '') AS fallbacks,\n"
        "    countIf(upstream_attempts > 1) AS retried,\n"
        "    quantilesExact(0.5, 0.95)(latency_ms)[1] AS latency_p50_ms,\n"
        "    quantilesExact(0.5, 0.95)(latency_ms)[2] AS latency_p95_ms,\n"
        "    quantileExact(0.5)(upstream_latency_ms) AS upstream_p50_ms\n"
        f"FROM requests\nWHERE {PROJECT} AND {IN_WINDOW} AND deployment != ''\n"
        "GROUP BY deployment ORDER BY requests DESC, deployment\n"
        "LIMIT {limit:UInt32}",
    ),
)
