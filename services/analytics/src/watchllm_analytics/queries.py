"""Runs the dashboard's named queries (``watchllm_shared.contracts.analytics_queries``).

Only named definitions run, never SQL from a caller; parameters are validated by the
definition and bound server-side. Each query runs with ``readonly=2`` (no writes, no
DDL), a time limit and a result-size limit, on a client of its own so dashboard reads
never wait for the writer's client. In embedded mode this is the dashboard's only way
into chdb; with a server, the dashboard may run the same definitions itself.

An empty result still names its columns: chdb sends no names or types when no row
matches, so the runner asks ``DESCRIBE TABLE (<query>)`` once per definition and keeps
the answer (a definition's columns never change while the process runs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from clickhouse_connect.driver.client import Client

from watchllm_analytics.clickhouse import call
from watchllm_analytics.metrics import AnalyticsMetrics
from watchllm_shared.contracts.analytics_queries import ANALYTICS_QUERIES, QueryResult

MAX_RESULT_ROWS = 100_000


class UnknownQuery(KeyError):
    pass


class QueryRunner:
    def __init__(self, client: Client, metrics: AnalyticsMetrics, timeout_seconds: float) -> None:
        self._client = client
        self._metrics = metrics
        self._settings = {
            "readonly": 2,
            "max_execution_time": max(1, round(timeout_seconds)),
            "max_result_rows": MAX_RESULT_ROWS,
            "result_overflow_mode": "throw",
        }
        self._described: dict[str, tuple[list[str], list[str]]] = {}

    async def run(self, name: str, raw_parameters: Mapping[str, Any]) -> QueryResult:
        """Raises UnknownQuery, pydantic.ValidationError, or ClickHouseUnavailable."""
        query = ANALYTICS_QUERIES.get(name)
        if query is None:
            raise UnknownQuery(name)
        parameters = query.bind(raw_parameters)
        started = time.monotonic()
        run = partial(self._client.query, query.sql, parameters=parameters, settings=self._settings)
        result = await asyncio.to_thread(call, run)
        columns = list(result.column_names)
        types = [column_type.name for column_type in result.column_types]
        if not columns:
            columns, types = await self._describe(name, query.describe_sql, parameters)
        self._metrics.query_seconds.labels(name).observe(time.monotonic() - started)
        return QueryResult(
            name=name, columns=columns, types=types, rows=[list(row) for row in result.result_rows]
        )

    async def _describe(
        self, name: str, describe_sql: str, parameters: dict[str, Any]
    ) -> tuple[list[str], list[str]]:
        """(names, types) of a definition's result columns, asked once and kept."""
        if name not in self._described:
            describe = partial(self._client.query, describe_sql,
                               parameters=parameters, settings=self._settings)  # fmt: skip
            rows = (await asyncio.to_thread(call, describe)).result_rows
            self._described[name] = ([row[0] for row in rows], [row[1] for row in rows])
        names, types = self._described[name]
        return list(names), list(types)
