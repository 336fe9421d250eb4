"""Writes batches of rows into the request log, each event id at most once.

Exactly one row per event, enforced here: before inserting, the writer asks ClickHouse
which of the batch's event ids are already stored (a primary-key-pruned lookup by
project, time range and id) and inserts only the others. A batch redelivered after a
crash (inserted, then killed before XACK), a retry after a timeout that did commit,
and an event the producer published twice all become "already stored" instead of a
second row. Within one batch, the first row of an event id wins. Reads therefore need
no ``FINAL``, and the hourly projection (stored in the same part) counts each event
once. The one race this cannot see, two processes inserting the same id at the same
moment, is collapsed by the table's ReplacingMergeTree engine when parts merge.

Every row is checked, also rows whose entry the group delivered for the first time
(XREADGROUP ``>``), although such an *entry* cannot have been stored before: an *event*
can still arrive in a new entry or be handed out again by ``>``. The gateway re-sends
a whole pipelined batch of XADDs after a timeout or error, some of which Redis may have
applied (a producer duplicate); an operator replays a dead-lettered entry (parked as
too-many-deliveries, it may have been stored before the crash that parked it); a Redis
failover to a replica that had not yet seen our reads, or an ``XGROUP SETID``, hands
entries out again as new. Skipping the check for ``>`` entries would turn each of these
into a second row until a merge, so the check stays, and is made cheap instead: its
ids go to ClickHouse as one hex string (no per-character escaping) and its lookup runs
in C++ outside the GIL (~1.5 µs an event; see ``tests/bench/results``).

Failure modes:
- ClickHouse unavailable: :class:`ClickHouseUnavailable` propagates; the caller retries
  the whole batch later (the check makes a retry after a partial insert safe).
- Rows rejected: the batch is split in halves until the offending rows are alone; those
  come back in ``WriteOutcome.rejected`` with ClickHouse's error (for the dead-letter
  stream) and the rest are stored.

Rows travel as one Arrow table per batch (a ``blocks.RowBlock``, whose columns
``page_decoder`` built in C++ from the entries' JSON) and ClickHouse decodes them in
C++; the writer touches rows one by one in Python only to drop duplicates or
already-stored events, which are rare. Blocking: call it from a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from clickhouse_connect.driver.client import Client
from opentelemetry.util.types import AttributeValue

from watchllm_analytics.blocks import RowBlock
from watchllm_analytics.clickhouse import RowsRejected, Verbatim, call
from watchllm_analytics.stream_group import Fields
from watchllm_shared.stream_tracing import batch_spans
from watchllm_shared.telemetry import active_tracer

_STORED_IDS = """
SELECT event_id FROM requests
WHERE project_id IN {projects:Array(UUID)}
  AND occurred_at BETWEEN {first:DateTime64(3, 'UTC')} AND {last:DateTime64(3, 'UTC')}
  AND event_id IN (
    SELECT toUUID(substring({ids:String}, number * 32 + 1, 32)) FROM numbers({count:UInt32}))"""
_ID_BYTES = 16


class Rejected(NamedTuple):
    entry_id: bytes
    fields: Fields
    error: str  # ClickHouse's


@dataclass(slots=True)
class WriteOutcome:
    written: int = 0
    already_stored: int = 0  # redeliveries and producer duplicates, not written again
    rejected: list[Rejected] = field(default_factory=list)


# Tracing (only when on): one ``analytics insert batch`` span per write, linked to the
# events' traces, and an ``analytics insert`` span in each event's own trace (see
# ``watchllm_shared.stream_tracing.batch_spans``); a row ClickHouse refused has an error.
_SPAN_ATTRIBUTES: dict[str, AttributeValue] = {
    "db.system.name": "clickhouse", "db.operation.name": "INSERT", "db.collection.name": "requests",
}  # fmt: skip


class RequestLogWriter:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._tracer = active_tracer("watchllm_analytics")  # None unless tracing is on

    def write(self, rows: RowBlock) -> WriteOutcome:
        if self._tracer is None:
            return self._write(rows)
        entries = list(zip(rows.entry_ids, rows.fields, strict=True))
        with batch_spans(self._tracer, "analytics insert", entries, _SPAN_ATTRIBUTES) as traced:
            outcome = self._write(rows)
            for rejected in outcome.rejected:
                traced.fail(rejected.entry_id, rejected.error)
            traced.span.set_attribute("watchllm.rows_written", outcome.written)
            traced.span.set_attribute("watchllm.already_stored", outcome.already_stored)
        return outcome

    def _write(self, rows: RowBlock) -> WriteOutcome:
        unique = _first_of_each_event(rows)
        fresh = _without(unique, self._stored_ids(unique))
        outcome = WriteOutcome(already_stored=len(rows) - len(fresh))
        outcome.rejected = self._insert_isolating(fresh)
        outcome.written = len(fresh) - len(outcome.rejected)
        return outcome

    def _stored_ids(self, rows: RowBlock) -> set[bytes]:
        """The 16-byte ids of ``rows`` already in the table."""
        if not len(rows):
            return set()
        first, last = rows.time_range()
        parameters = {
            "projects": rows.project_ids(),
            "first": first,
            "last": last,
            # 32 hex digits an id, back to back, built in C; escaping it character by
            # character (what a str parameter gets) cost more than the lookup itself, and
            # cutting it by position costs ClickHouse half of splitting it at commas.
            "ids": Verbatim(rows.event_ids().hex()),
            "count": len(rows),
        }
        result = call(partial(self._client.query, _STORED_IDS, parameters=parameters))
        return {row[0].bytes for row in result.result_rows}

    def _insert_isolating(self, rows: RowBlock) -> list[Rejected]:
        """Insert ``rows``; the rows ClickHouse refuses even alone, with its reason."""
        if not len(rows):
            return []
        try:
            table = rows.table.combine_chunks()  # one block for ClickHouse, not one a page
            call(lambda: self._client.insert_arrow("requests", table))
        except RowsRejected as exc:
            if len(rows) == 1:
                return [Rejected(rows.entry_ids[0], rows.fields[0], str(exc))]
            middle = len(rows) // 2
            return self._insert_isolating(rows.slice(0, middle)) + self._insert_isolating(
                rows.slice(middle, len(rows))
            )
        return []


def _first_of_each_event(rows: RowBlock) -> RowBlock:
    """``rows`` with each event id once (its first row); checked in C, selected in Python
    only when there are duplicates."""
    if rows.distinct_event_ids() == len(rows):
        return rows
    ids = rows.event_ids()
    first: dict[bytes, int] = {}
    for index in range(len(rows)):
        first.setdefault(ids[index * _ID_BYTES : (index + 1) * _ID_BYTES], index)
    return rows.take(sorted(first.values()))


def _without(rows: RowBlock, stored: set[bytes]) -> RowBlock:
    if not stored:
        return rows
    known = pa.array(list(stored), pa.binary(_ID_BYTES))
    keep = pc.invert(pc.is_in(rows.table.column("event_id"), value_set=known))
    return rows.take(pc.indices_nonzero(keep).to_pylist())
