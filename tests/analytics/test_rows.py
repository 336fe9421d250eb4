"""From stream entries to rows: what is stored, and what is refused as unreadable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from tests.analytics.conftest import make_event
from watchllm_analytics.clickhouse import Verbatim
from watchllm_analytics.rows import COLUMNS, NIL_UUID, UnreadableEvent, decode_entry, to_arrow
from watchllm_shared.contracts import RequestCompleted

pytestmark = pytest.mark.unit


def as_read(event: RequestCompleted) -> dict[bytes, bytes]:
    """The entry's fields as redis-py returns them (bytes keys)."""
    return {key.encode(): value for key, value in event.to_stream_fields().items()}


def fields_of(**changes: object) -> dict[bytes, bytes]:
    document = make_event().model_dump(mode="json")
    document.update(changes)
    return {b"data": orjson.dumps(document)}


def test_a_readable_event_becomes_a_row_with_every_field() -> None:
    event = make_event(error_type="x", cache_similarity=0.97, stream=True)
    row = decode_entry(b"1-0", as_read(event))
    values = dict(zip(COLUMNS, row.values, strict=True))
    assert (row.entry_id, row.event_id, row.project_id) == (
        b"1-0",
        event.event_id,
        event.project_id,
    )
    assert values["event_id"] == event.event_id.bytes
    assert Decimal(values["cost_usd"]) == event.cost_usd
    assert (values["model"], values["error_type"], values["stream"]) == (event.model, "x", True)
    assert values["cache_similarity"] == 0.97


def test_the_log_has_a_column_for_every_event_field() -> None:
    """A field added to the event (add-only) needs a migration adding its column."""
    assert set(COLUMNS) == set(RequestCompleted.model_fields)


def test_unpriced_is_stored_and_an_older_producers_event_reads_false() -> None:
    """The gateway marks a request whose model has no price (its cost reads 0)."""
    stored = [
        dict(zip(COLUMNS, decode_entry(b"1-0", fields).values, strict=True))["unpriced"]
        for fields in (fields_of(unpriced=True), fields_of(unpriced=False), fields_of())
    ]
    document = make_event().model_dump(mode="json")
    del document["unpriced"]  # as a gateway from before the field writes it
    older = decode_entry(b"1-0", {b"data": orjson.dumps(document)})
    assert stored == [True, False, False]
    assert dict(zip(COLUMNS, older.values, strict=True))["unpriced"] is False


def test_the_deployment_and_fallback_are_stored_and_an_older_event_reads_empty() -> None:
    """The gateway names the deployment that answered and the fallback model taken."""
    row = decode_entry(b"1-0", fields_of(deployment="openai-a", fallback_model="fb"))
    values = dict(zip(COLUMNS, row.values, strict=True))
    assert (values["deployment"], values["fallback_model"]) == ("openai-a", "fb")
    document = make_event().model_dump(mode="json")
    del document["deployment"], document["fallback_model"]  # a gateway from before them
    older = dict(zip(COLUMNS, decode_entry(b"1-0", {b"data": orjson.dumps(document)}).values,
                     strict=True))  # fmt: skip
    assert (older["deployment"], older["fallback_model"]) == ("", "")


def test_properties_and_the_end_user_are_stored_and_an_older_event_reads_empty() -> None:
    """The gateway records the caller's properties and end user (``attribution``)."""
    row = decode_entry(b"1-0", fields_of(properties={"feature": "chat", "tier": "gold"},
                                         end_user="user-7"))  # fmt: skip
    values = dict(zip(COLUMNS, row.values, strict=True))
    assert values["properties"] == [("feature", "chat"), ("tier", "gold")]
    assert values["end_user"] == "user-7"
    document = make_event().model_dump(mode="json")
    del document["properties"], document["end_user"]  # a gateway from before them
    older = dict(zip(COLUMNS, decode_entry(b"1-0", {b"data": orjson.dumps(document)}).values,
                     strict=True))  # fmt: skip
    assert (older["properties"], older["end_user"]) == ([], "")


def test_absent_project_key_and_strings_become_nil_and_empty() -> None:
    row = decode_entry(b"1-0", fields_of(project_id=None, key_id=None, model=None, trace_id=None))
    values = dict(zip(COLUMNS, row.values, strict=True))
    assert row.project_id == NIL_UUID
    assert values["key_id"] == NIL_UUID.bytes
    assert (values["model"], values["trace_id"]) == ("", "")


def test_costs_are_rounded_half_even_to_twelve_places() -> None:
    row = decode_entry(b"1-0", fields_of(cost_usd="0.0000000000025", cost_saved_usd="1.5"))
    values = dict(zip(COLUMNS, row.values, strict=True))
    assert Decimal(values["cost_usd"]) == Decimal("0.000000000002")
    assert Decimal(values["cost_saved_usd"]) == Decimal("1.5")


@pytest.mark.parametrize(
    "moment", ["1970-01-01T00:00:00Z", "2106-02-07T06:28:15.999Z", "2106-02-07T08:28:15+02:00"]
)
def test_times_at_the_edges_of_what_the_log_holds_are_stored(moment: str) -> None:
    row = decode_entry(b"1-0", fields_of(occurred_at=moment))
    assert row.occurred_at == datetime.fromisoformat(moment)


def test_naive_times_are_taken_as_utc() -> None:
    row = decode_entry(b"1-0", fields_of(occurred_at="2026-01-02T03:04:05.678"))
    assert row.occurred_at == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"data": b"not json"}, "not a RequestCompleted v1"),
        ({b"other": b"{}"}, "no field"),
        (fields_of(event_id="nope"), "event_id"),
        (fields_of(schema_version=2), "schema_version"),
        (fields_of(prompt_tokens=-1), "prompt_tokens=-1"),
        (fields_of(completion_tokens=2**32), "completion_tokens"),
        (fields_of(cost_usd="1e30"), "does not fit Decimal(38, 12)"),
        (fields_of(http_status=70000), "http_status"),
        (
            fields_of(occurred_at="2150-01-01T00:00:00Z"),
            "occurred_at=2150-01-01T00:00:00.00:00 is outside",
        ),
        (fields_of(occurred_at="2106-02-07T06:28:16Z"), "outside the times the request log"),
        (fields_of(occurred_at="2106-02-07T08:28:16+02:00"), "outside the times"),
        (fields_of(occurred_at="2400-01-01T00:00:00"), "occurred_at=2400"),  # naive: UTC
        (fields_of(occurred_at="1969-12-31T23:59:59.999Z"), "occurred_at=1969"),
        (fields_of(occurred_at="1800-01-01T00:00:00Z"), "to before 2106-02-07T06:28:16Z"),
    ],
)
def test_unreadable_entries_say_why(fields: dict[bytes, bytes], reason: str) -> None:
    with pytest.raises(UnreadableEvent, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode_entry(b"1-0", fields)


def test_rows_become_one_arrow_table_in_column_order() -> None:
    rows = [decode_entry(f"1-{i}".encode(), as_read(make_event())) for i in range(3)]
    table = to_arrow(rows)
    assert table.num_rows == 3
    assert tuple(table.column_names) == COLUMNS
    assert table.column("event_id").to_pylist() == [r.event_id.bytes for r in rows]
    assert uuid.UUID(bytes=table.column("project_id")[0].as_py()) == rows[0].project_id
    costs = [Decimal(r.values[COLUMNS.index("cost_usd")]) for r in rows]
    assert table.column("cost_usd").to_pylist() == costs


def test_verbatim_parameters_take_only_text_that_needs_no_escaping() -> None:
    ids = b"".join(uuid.uuid4().bytes for _ in range(3)).hex(",", 16)
    assert str(Verbatim(ids)) == ids
    for unsafe in ("a'b", "a\\b", "a b", "a\nb", "é", "{x}"):
        with pytest.raises(ValueError, match="Verbatim"):
            Verbatim(unsafe)
