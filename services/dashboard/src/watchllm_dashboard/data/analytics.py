"""Reading analytics: the shared query definitions, by one of two paths.

- :class:`ServiceReader` (default; the only way in embedded mode, where chdb admits one
  process): ``POST {analytics_url}/v1/queries/{name}`` with the parameters as JSON.
- :class:`ClickHouseReader` (``WATCHLLM_DASHBOARD_CLICKHOUSE_URL`` set): runs the same
  definition on a ClickHouse server itself, as a read-only user, with the parameters
  bound server-side.

Both answer a pandas DataFrame with the same columns and dtypes: money (Decimal) as
float, times as UTC timestamps, ids as strings. Only named definitions run; nothing is
formatted into SQL here. Failures become :class:`AnalyticsUnavailable` (say so on the
page) or :class:`QueryRejected` (a bug: parameters the definition refuses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import clickhouse_connect
import httpx
import pandas as pd
from clickhouse_connect.driver.exceptions import ClickHouseError

from watchllm_dashboard.settings import DashboardSettings
from watchllm_shared.contracts.analytics_queries import ANALYTICS_QUERIES


class AnalyticsUnavailable(Exception):
    """The analytics store cannot answer now."""


class QueryRejected(Exception):
    """The query or its parameters were refused (a programming error)."""


class AnalyticsReader(Protocol):
    def query(self, name: str, parameters: Mapping[str, Any]) -> pd.DataFrame: ...

    def close(self) -> None: ...


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    return value


def _to_float(value: Any) -> float | None:
    return None if value is None else float(Decimal(str(value)))


def frame(
    columns: Sequence[str], types: Sequence[str], rows: Sequence[Sequence[Any]]
) -> pd.DataFrame:
    """One DataFrame shape for both paths, whatever JSON or the driver handed over."""
    data = pd.DataFrame([list(r) for r in rows], columns=list(columns))
    for column, kind in zip(columns, types, strict=True):
        if "Decimal" in kind:
            data[column] = data[column].map(_to_float).astype("float64")
        elif "DateTime" in kind:
            data[column] = pd.to_datetime(data[column], utc=True, format="ISO8601")
        elif "Float" in kind or "Int" in kind:
            data[column] = pd.to_numeric(data[column], errors="coerce")
        elif "UUID" in kind:
            data[column] = data[column].map(lambda v: None if v is None else str(v))
    return data


class ServiceReader:
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def query(self, name: str, parameters: Mapping[str, Any]) -> pd.DataFrame:
        body = {k: _json_value(v) for k, v in parameters.items()}
        try:
            reply = self._client.post(f"/v1/queries/{name}", json=body)
        except httpx.HTTPError as exc:
            raise AnalyticsUnavailable(f"analytics service unreachable: {exc}") from exc
        if reply.status_code in (404, 422, 401):
            raise QueryRejected(f"{name}: {reply.status_code} {reply.text[:500]}")
        if reply.status_code != 200:
            raise AnalyticsUnavailable(f"analytics service answered {reply.status_code}")
        result = reply.json()
        return frame(result["columns"], result["types"], result["rows"])

    def close(self) -> None:
        self._client.close()


class ClickHouseReader:
    def __init__(self, dsn: str, database: str, timeout: float) -> None:
        self._dsn, self._database, self._timeout = dsn, database, timeout
        self._client: Any = None
        self._described: dict[str, tuple[list[str], list[str]]] = {}

    def _connected(self) -> Any:
        if self._client is None:
            network: dict[str, Any] = {}
            if not self._dsn.startswith("chdb:"):  # chdb (tools, tests) runs in-process
                network = {
                    "connect_timeout": min(self._timeout, 10.0),
                    "send_receive_timeout": self._timeout,
                    "autogenerate_session_id": False,
                }
            try:
                self._client = clickhouse_connect.get_client(
                    dsn=self._dsn, database=self._database, **network
                )
            except ClickHouseError as exc:
                raise AnalyticsUnavailable(f"ClickHouse unreachable: {exc}") from exc
        return self._client

    def query(self, name: str, parameters: Mapping[str, Any]) -> pd.DataFrame:
        definition = ANALYTICS_QUERIES.get(name)
        if definition is None:
            raise QueryRejected(f"no query named {name!r}")
        bound = definition.bind(parameters)
        try:
            result = self._connected().query(definition.sql, parameters=bound)
            columns = list(result.column_names)
            types = [column_type.name for column_type in result.column_types]
            if not columns:  # an empty chdb result names nothing (see describe_sql)
                if name not in self._described:
                    described = self._connected().query(definition.describe_sql, parameters=bound)
                    self._described[name] = (
                        [row[0] for row in described.result_rows],
                        [row[1] for row in described.result_rows],
                    )
                columns, types = self._described[name]
        except (ClickHouseError, OSError) as exc:
            raise AnalyticsUnavailable(f"ClickHouse could not answer: {exc}") from exc
        return frame(columns, types, result.result_rows)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def open_reader(settings: DashboardSettings) -> AnalyticsReader:
    timeout = settings.dashboard_query_timeout_seconds
    if settings.dashboard_clickhouse_url:
        return ClickHouseReader(
            settings.dashboard_clickhouse_url, settings.clickhouse_database, timeout
        )
    token = settings.analytics_query_token
    return ServiceReader(
        settings.analytics_url, token.get_secret_value() if token else None, timeout
    )
