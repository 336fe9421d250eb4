"""What every analytics query definition is made of: the definition itself, the time
span its parameters carry, the answer's shape, and the SQL pieces that bind a project
and a window.

Every value reaches ClickHouse as a server-side query parameter (``{name:Type}`` in the
SQL); nothing from a caller is ever formatted into SQL text. Parameters are validated
by a pydantic model first (types, ranges, span limits). The catalog of definitions is
``analytics_queries.ANALYTICS_QUERIES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, model_validator

REQUEST_LOG_TABLE = "requests"
MAX_RANGE = timedelta(days=400)

START = "{start:DateTime64(3, 'UTC')}"
END = "{end:DateTime64(3, 'UTC')}"
PROJECT = "project_id = {project_id:UUID}"
IN_WINDOW = f"occurred_at BETWEEN {START} AND {END}"


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is read as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class TimeSpan(BaseModel):
    """``start`` to ``end`` in UTC (naive means UTC), ordered, at most ``MAX_RANGE``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered_and_bounded(self) -> Self:
        start, end = utc(self.start), utc(self.end)
        if end < start:
            raise ValueError("end is before start")
        if end - start > MAX_RANGE:
            raise ValueError(f"range longer than {MAX_RANGE.days} days")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        return self


class ProjectSpan(TimeSpan):
    project_id: UUID


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
