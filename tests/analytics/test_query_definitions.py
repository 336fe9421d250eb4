"""The dashboard's query definitions (shared contract): parameters are validated and
bound server-side, never formatted into SQL."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from watchllm_shared.contracts.analytics_queries import ANALYTICS_QUERIES

pytestmark = pytest.mark.unit

PLACEHOLDER = re.compile(r"\{(\w+):[^}]+\}")
NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
VALID = {
    "project_id": str(uuid.uuid4()),
    "start": (NOW - timedelta(days=1)).isoformat(),
    "end": NOW.isoformat(),
    "limit": 10,
    "errors_only": False,
    "model": "gpt-4o-mini",
    "key_id": str(uuid.uuid4()),
    "property": "feature",
    "request_id": "req_0123",
    "text": "needle",
}


@pytest.mark.parametrize("query", ANALYTICS_QUERIES.values(), ids=lambda q: q.name)
def test_every_placeholder_is_a_validated_parameter(query) -> None:  # type: ignore[no-untyped-def]
    placeholders = set(PLACEHOLDER.findall(query.sql))
    assert placeholders == set(query.params.model_fields)
    accepted = {k: v for k, v in VALID.items() if k in query.params.model_fields}
    assert set(query.bind(accepted)) == placeholders


@pytest.mark.parametrize("query", ANALYTICS_QUERIES.values(), ids=lambda q: q.name)
def test_unknown_parameters_are_refused(query) -> None:  # type: ignore[no-untyped-def]
    accepted = {k: v for k, v in VALID.items() if k in query.params.model_fields}
    with pytest.raises(ValidationError):
        query.bind({**accepted, "sql": "DROP TABLE requests"})


@pytest.mark.parametrize(
    "change",
    [
        {"project_id": "'; DROP TABLE requests; --"},
        {"start": NOW.isoformat(), "end": (NOW - timedelta(hours=2)).isoformat()},
        {"start": (NOW - timedelta(days=401)).isoformat()},
    ],
)
def test_bad_values_are_refused(change: dict[str, str]) -> None:
    query = ANALYTICS_QUERIES["project_usage_by_hour"]
    params = {k: VALID[k] for k in ("project_id", "start", "end")}
    with pytest.raises(ValidationError):
        query.bind({**params, **change})


def test_limits_are_bounded_and_times_become_utc() -> None:
    recent = ANALYTICS_QUERIES["project_recent_requests"]
    with pytest.raises(ValidationError):
        recent.bind({"project_id": VALID["project_id"], "limit": 100_000})
    hourly = ANALYTICS_QUERIES["usage_by_project"]
    bound = hourly.bind({"start": "2026-03-01T12:00:00+02:00", "end": "2026-03-01T13:00:00"})
    assert bound["start"] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert bound["end"] == datetime(2026, 3, 1, 13, tzinfo=UTC)
