"""Reading requests back through the analytics service's named queries.

``POST <analytics>/v1/queries/<name>`` with the query's parameters as JSON (README
"Analytics"; definitions in ``contracts.analytics_queries``). Every query is scoped to
one project, which the caller learns from the gateway's answers (``probe.project_of``).

- One request: ``project_request_log_count`` with ``search`` = its ``x-request-id``.
- Many (a load test): ``project_request_log`` pages through the project's rows in the
  run's window and keeps the request ids that are ours, so other traffic of the project
  never counts. Beyond ``MAX_ROWS`` rows in the window that would cost too many pages;
  then the run reports the window's row count instead, and says so.

``occurred_at`` is the gateway's clock, so windows get ``CLOCK_MARGIN`` on both sides
for a gateway on another machine.

An analytics API that cannot be reached, wants a token, or is not the analytics service
raises ``DeploymentError`` with what to do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import orjson

from watchllm_shared.cli.deployment.probe import DeploymentError, unreachable

CLOCK_MARGIN = timedelta(minutes=2)
MAX_ROWS = 100_000
_PAGE = 500  # the request log query's largest page
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Recorded:
    count: int
    method: str  # "request_id": ours, matched by id; "count": every row in the window


class AnalyticsReader:
    def __init__(self, client: httpx.AsyncClient, base_url: str, token: str | None) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = {"content-type": "application/json"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"

    async def rows(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The named query's rows as dicts (column name → value)."""
        url = f"{self._base}/v1/queries/{name}"
        try:
            response = await self._client.post(url, content=orjson.dumps(params),
                                               headers=self._headers)  # fmt: skip
        except httpx.HTTPError as exc:
            raise DeploymentError(
                f"analytics API: {unreachable(exc, self._base)}; check --analytics-url"
                " (the analytics service, port 8092 by default)"
            ) from exc
        if response.status_code != 200:
            raise DeploymentError(_refusal(response, name, self._base))
        try:
            answer = orjson.loads(response.content)
            columns = [c["name"] if isinstance(c, dict) else c for c in answer["columns"]]
            return [dict(zip(columns, row, strict=True)) for row in answer["rows"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DeploymentError(
                f"analytics API: {url} did not answer a query result; is --analytics-url"
                " the analytics service?"
            ) from exc

    async def request_stored(
        self, project_id: UUID, request_id: str, around: datetime, within: float
    ) -> float | None:
        """Seconds until ``request_id`` was found (polling), or None after ``within``."""
        params = {**_window(project_id, around, around), "search": request_id}
        started = time.monotonic()
        while True:
            rows = await self.rows("project_request_log_count", params)
            if rows and int(rows[0]["requests"]) > 0:
                return time.monotonic() - started
            if time.monotonic() - started + _POLL_SECONDS > within:
                return None
            await asyncio.sleep(_POLL_SECONDS)

    async def recorded(
        self, project_id: UUID, ids: Collection[str], start: datetime, end: datetime,
        within: float,
    ) -> Recorded:  # fmt: skip
        """How many of ``ids`` are stored, waiting up to ``within`` seconds for all."""
        window = _window(project_id, start, end)
        deadline = time.monotonic() + within
        wanted = set(ids)
        while True:
            in_window = int((await self.rows("project_request_log_count", window))[0]["requests"])
            if in_window > MAX_ROWS:
                return Recorded(in_window, "count")
            out_of_time = time.monotonic() >= deadline
            if in_window >= len(wanted) or out_of_time:
                found = await self._ids_in(window, in_window) & wanted
                if len(found) == len(wanted) or out_of_time:
                    return Recorded(len(found), "request_id")
            await asyncio.sleep(_POLL_SECONDS)

    async def _ids_in(self, window: dict[str, Any], rows: int) -> set[str]:
        found: set[str] = set()
        for offset in range(0, rows, _PAGE):
            page = await self.rows("project_request_log",
                                   {**window, "offset": offset, "limit": _PAGE})  # fmt: skip
            found.update(str(row["request_id"]) for row in page)
        return found


def _window(project_id: UUID, start: datetime, end: datetime) -> dict[str, Any]:
    return {"project_id": str(project_id), "start": (start - CLOCK_MARGIN).isoformat(),
            "end": (end + CLOCK_MARGIN).isoformat()}  # fmt: skip


def _refusal(response: httpx.Response, name: str, base: str) -> str:
    status = response.status_code
    if status == 401:
        return ("analytics API: 401, a missing or wrong token: pass --analytics-token (its"
                " WATCHLLM_ANALYTICS_QUERY_TOKEN; run from the folder of a `watchllm up`,"
                " its token is found)")  # fmt: skip
    if status == 404:
        return (f"analytics API: {base} has no query {name!r} (404); is --analytics-url the"
                " analytics service, and as new as this CLI?")  # fmt: skip
    if status == 503:
        return (f"analytics API: ClickHouse cannot answer (503): see {base}/health and the"
                " analytics service's log")  # fmt: skip
    return f"analytics API: {name} answered HTTP {status}: {response.text[:200]}"
