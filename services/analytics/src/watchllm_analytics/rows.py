"""From a stream entry to a request-log row, or a clear reason why it cannot be one.

Failure mode enforced here: an entry that is not a readable ``RequestCompleted`` v1, or
whose values do not fit the table's columns (negative or huge token counts, costs
beyond Decimal(38, 12), an ``occurred_at`` outside the stored times), raises
:class:`UnreadableEvent`; the pipeline sends it to the dead-letter stream at once, since
no retry can make it readable. Checking ranges here keeps ClickHouse from rejecting a
whole batch for one bad row, or keeping a wrong one.

Stored times: ``occurred_at`` must be at least 1970-01-01T00:00:00Z and before
2106-02-07T06:28:16Z (``canonical.FIRST_STORED_TIME``, ``END_OF_STORED_TIME``): the
range of ClickHouse's DateTime (seconds since 1970 in 32 bits). The DateTime64(3) column
itself holds more, but the hourly projection and the dashboard's queries group by
``toStartOfHour(occurred_at)``, a DateTime, which saturates outside that range (a row
from 2150 would count in the hour 2106-02-07 06:00), and the table's first TTL,
``toDateTime(occurred_at) + N days``, wrapped past 2106 into the past, so such rows were
dropped as expired after being acknowledged (migration 0003 measures the TTL on the
DateTime64 column instead, which does not overflow for any stored time and any
retention the settings allow).

Absent values: a missing project or key is the nil UUID (the sort key cannot be
Nullable), missing strings are '' (``deployment``, ``fallback_model``, ``end_user``
too), a missing ``unpriced`` is false, missing ``properties`` an empty map. Costs are
rounded half-even to 12 decimal places.

Speed: pages of entries are decoded in one go by ``page_decoder`` (~4 µs an event);
what it does not take comes here one entry at a time: documents in the contract's
canonical form are read by ``canonical`` (~10 µs), anything else goes through the
contract itself (pydantic, ~15 µs with the row), which decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, NamedTuple
from uuid import UUID

import pyarrow as pa  # type: ignore[import-untyped]
from pydantic import ValidationError

from watchllm_analytics.canonical import END_OF_STORED_TIME, FIRST_STORED_TIME, canonical_values
from watchllm_shared.contracts import RequestCompleted

NIL_UUID = UUID(int=0)
COST_QUANTUM = Decimal("1e-12")
_COST_INTEGER_DIGITS = 26  # Decimal(38, 12)
_COST_EXPONENT = -12
_COST_CONTEXT = Context(prec=40)
_UINT8, _UINT16, _UINT32 = 2**8, 2**16, 2**32

# The request-log columns the writer fills, in row order, with their Arrow types (rows
# travel to ClickHouse as one Arrow table per batch; ingested_at is the server's).
_UUID = pa.binary(16)
_COST_TYPE = pa.decimal128(38, 12)  # rows carry costs as decimal strings, Arrow parses them
# Rows carry properties as a list of (name, value) pairs, in the document's order.
PROPERTIES_TYPE = pa.map_(pa.string(), pa.string())
ARROW_SCHEMA = pa.schema([
    ("event_id", _UUID), ("occurred_at", pa.timestamp("ms", tz="UTC")),
    ("schema_version", pa.uint8()), ("request_id", pa.string()), ("project_id", _UUID),
    ("key_id", _UUID), ("model", pa.string()), ("provider", pa.string()),
    ("endpoint", pa.string()), ("http_status", pa.uint16()), ("status", pa.string()),
    ("error_type", pa.string()), ("cache", pa.string()), ("cache_similarity", pa.float64()),
    ("stream", pa.bool_()), ("prompt_tokens", pa.uint32()), ("completion_tokens", pa.uint32()),
    ("cost_usd", _COST_TYPE), ("cost_saved_usd", _COST_TYPE),
    ("latency_ms", pa.float64()), ("upstream_latency_ms", pa.float64()),
    ("ttfb_ms", pa.float64()), ("trace_id", pa.string()), ("upstream_attempts", pa.uint8()),
    ("cache_key", pa.string()), ("unpriced", pa.bool_()), ("deployment", pa.string()),
    ("fallback_model", pa.string()), ("properties", PROPERTIES_TYPE), ("end_user", pa.string()),
])  # fmt: skip
COLUMNS = tuple(ARROW_SCHEMA.names)


class UnreadableEvent(ValueError):
    """The entry can never become a row; the message says why."""


_EVENT_ID, _OCCURRED_AT, _PROJECT_ID = (
    COLUMNS.index(c) for c in ("event_id", "occurred_at", "project_id")
)


class EventRow(NamedTuple):
    """A row ready to store (a tuple: one is built per event, so it must be cheap)."""

    entry_id: bytes  # the stream entry, acknowledged once the row is stored
    fields: dict[bytes, bytes]  # the entry as read, for the dead-letter stream
    values: tuple[Any, ...]  # in COLUMNS order, UUIDs as 16 bytes, costs as decimal strings

    @property
    def event_id(self) -> UUID:
        return UUID(bytes=self.values[_EVENT_ID])

    @property
    def project_id(self) -> UUID:
        return UUID(bytes=self.values[_PROJECT_ID])

    @property
    def occurred_at(self) -> datetime:
        return self.values[_OCCURRED_AT]  # type: ignore[no-any-return]


def decode_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> EventRow:
    data = fields.get(b"data")
    if data is not None and (values := canonical_values(data)) is not None:
        return EventRow(entry_id, fields, values)
    try:
        event = RequestCompleted.from_stream_fields(fields)
    except KeyError as exc:
        raise UnreadableEvent(f"no field {exc} in the entry") from exc
    except ValidationError as exc:
        raise UnreadableEvent(f"not a RequestCompleted v1: {_short(exc)}") from exc
    return to_row(entry_id, fields, event)


def to_row(entry_id: bytes, fields: dict[bytes, bytes], event: RequestCompleted) -> EventRow:
    _check_range("prompt_tokens", event.prompt_tokens, _UINT32)
    _check_range("completion_tokens", event.completion_tokens, _UINT32)
    _check_range("http_status", event.http_status, _UINT16)
    _check_range("upstream_attempts", event.upstream_attempts, _UINT8)
    values = (
        event.event_id.bytes, _stored_time(event.occurred_at), event.schema_version,
        event.request_id,
        (event.project_id or NIL_UUID).bytes, (event.key_id or NIL_UUID).bytes, event.model or "",
        event.provider or "", event.endpoint,
        event.http_status, event.status.value, event.error_type or "", event.cache.value,
        event.cache_similarity, event.stream, event.prompt_tokens, event.completion_tokens,
        _cost("cost_usd", event.cost_usd), _cost("cost_saved_usd", event.cost_saved_usd),
        event.latency_ms, event.upstream_latency_ms, event.ttfb_ms, event.trace_id or "",
        event.upstream_attempts, event.cache_key or "", event.unpriced is True,
        event.deployment or "", event.fallback_model or "", list(event.properties.items()),
        event.end_user or "",
    )  # fmt: skip
    return EventRow(entry_id, fields, values)


def to_arrow(rows: Sequence[EventRow]) -> pa.Table:
    """One Arrow table of ``rows``; raises ValueError/TypeError if a value does not fit."""
    columns = zip(*(row.values for row in rows), strict=True)
    arrays = [
        pa.array(column, type=pa.string()).cast(field.type)  # costs: parsed in C++, exactly
        if field.type == _COST_TYPE
        else pa.array(column, type=field.type)
        for column, field in zip(columns, ARROW_SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def warm_up() -> None:
    """pyarrow's first conversion imports pandas (~1.5 s): pay that at start, not in a batch."""
    to_arrow([decode_entry(b"0-0", {b"data": _SAMPLE})])


def _check_range(name: str, value: int, bound: int) -> None:
    if not 0 <= value < bound:
        raise UnreadableEvent(f"{name}={value} is outside 0..{bound - 1}")


def _cost(name: str, value: Decimal) -> str:
    """The cost as a decimal string with at most 12 places (how rows carry costs)."""
    if not value.is_finite() or (value and value.adjusted() >= _COST_INTEGER_DIGITS):
        raise UnreadableEvent(f"{name}={value} does not fit Decimal(38, 12)")
    if value.as_tuple().exponent >= _COST_EXPONENT:  # type: ignore[operator]
        return str(value)  # already at most 12 decimal places
    return str(value.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN, context=_COST_CONTEXT))


def _stored_time(moment: datetime) -> datetime:
    """Naive times are taken as UTC; aware ones are kept (Arrow converts them to UTC).
    Raises UnreadableEvent outside the stored times (see the module docstring)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    if not FIRST_STORED_TIME <= moment < END_OF_STORED_TIME:
        raise UnreadableEvent(
            f"occurred_at={moment.isoformat()} is outside the times the request log can"
            f" store ({FIRST_STORED_TIME:%Y-%m-%dT%H:%M:%SZ} to before"
            f" {END_OF_STORED_TIME:%Y-%m-%dT%H:%M:%SZ})"
        )
    return moment


def _short(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "document"
    return f"{where}: {first['msg']} ({exc.error_count()} error(s))"


_SAMPLE = (
    b'{"event_id":"00000000-0000-4000-8000-000000000000","occurred_at":"2026-01-01T00:00:00Z",'
    b'"request_id":"warm-up","endpoint":"/v1/chat/completions","http_status":200,'
    b'"status":"ok","latency_ms":1.0}'
)
