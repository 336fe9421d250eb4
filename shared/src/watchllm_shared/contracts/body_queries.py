"""Reading logged bodies (issue 17): one request's bodies, and a project's requests
whose bodies contain a text.

- ``request_bodies``: the request and answer of one request of one project (no row:
  never logged, expired, or another project's: a project never reads another's).
- ``project_request_search``: the project's requests in the window whose request or
  answer contains ``text`` (case-insensitive, UTF-8), newest first, each with the first
  ``EXCERPT_CHARS`` of both bodies and its request-log fields when it has a row there.

Both read only rows not yet expired (``expires_at``), whether or not the TTL's merge has
removed the others yet, and one row per request (``LIMIT 1 BY``; see migration 0007).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from watchllm_shared.contracts.query_base import AnalyticsQuery, ProjectSpan

EXCERPT_CHARS = 300  # written into the search's SQL


class RequestBodiesParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: UUID
    request_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RequestSearchParams(ProjectSpan):
    text: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    limit: int = Field(default=50, ge=1, le=1000)


# The newest matching body per request, then its request-log row (LEFT JOIN: a body
# whose event has not arrived yet, or was lost, still shows, with empty fields). One
# literal: what reaches ClickHouse is exactly this text and the bound parameters.
_SEARCH = """
SELECT b.request_id AS request_id, b.occurred_at AS occurred_at, b.endpoint AS endpoint,
    substringUTF8(b.request, 1, 300) AS request_excerpt,
    substringUTF8(b.response, 1, 300) AS response_excerpt,
    r.model AS model, r.status AS status, r.cost_usd AS cost_usd
FROM
(
    SELECT request_id, occurred_at, endpoint, request, response
    FROM request_bodies
    WHERE project_id = {project_id:UUID}
        AND occurred_at BETWEEN {start:DateTime64(3, 'UTC')} AND {end:DateTime64(3, 'UTC')}
        AND expires_at > now()
        AND (positionCaseInsensitiveUTF8(request, {text:String}) > 0
            OR positionCaseInsensitiveUTF8(response, {text:String}) > 0)
    ORDER BY occurred_at DESC
    LIMIT 1 BY request_id
    LIMIT {limit:UInt32}
) AS b
LEFT JOIN
(
    SELECT request_id, model, status, cost_usd
    FROM requests
    WHERE project_id = {project_id:UUID}
        AND occurred_at BETWEEN {start:DateTime64(3, 'UTC')} - INTERVAL 1 HOUR
            AND {end:DateTime64(3, 'UTC')} + INTERVAL 1 HOUR
) AS r USING (request_id)
ORDER BY occurred_at DESC, request_id
"""

BODY_QUERIES = (
    AnalyticsQuery(
        name="request_bodies",
        description="One request's logged request and answer bodies (redacted by the"
        " gateway), if its project logged them and they have not expired.",
        params=RequestBodiesParams,
        sql="""
SELECT request_id, occurred_at, endpoint, request, response, expires_at
FROM request_bodies
WHERE project_id = {project_id:UUID} AND request_id = {request_id:String}
    AND expires_at > now()
ORDER BY ingested_at
LIMIT 1
""",
    ),
    AnalyticsQuery(
        name="project_request_search",
        description="One project's requests over the window whose logged request or answer"
        " contains a text (case-insensitive), newest first, with excerpts of both bodies"
        " and the request log's model, status and cost.",
        params=RequestSearchParams,
        sql=_SEARCH,
    ),
)
