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
in C++ outside the GIL (~3 µs an event; see ``tests/bench/results``).

Failure modes:
- ClickHouse unavailable: :class:`ClickHouseUnavailable` propagates; the caller retries
  the whole batch later (the check makes a retry after a partial insert safe).
- Rows rejected: the batch is split in halves until the offending rows are alone; those
  come back in ``WriteOutcome.rejected`` with ClickHouse's error (for the dead-letter
  stream) and the rest are stored.

Rows travel as one Arrow table per batch: pyarrow builds the columns in C and
ClickHouse decodes them in C++, which keeps Python's share per row small (the service
is one Python process; see the bench). Blocking: call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from uuid import UUID

from clickhouse_connect.driver.client import Client
from opentelemetry.util.types import AttributeValue

from watchllm_analytics.clickhouse import RowsRejected, Verbatim, call
from watchllm_analytics.rows import EventRow, to_arrow
from watchllm_shared.stream_tracing import batch_spans
from watchllm_shared.telemetry import active_tracer

_STORED_IDS = """
SELECT event_id FROM requests
WHERE project_id IN {projects:Array(UUID)}
  AND occurred_at BETWEEN {first:DateTime64(3, 'UTC')} AND {last:DateTime64(3, 'UTC')}
  AND event_id IN (SELECT toUUID(arrayJoin(splitByChar(',', {ids:String}))))"""


@dataclass(slots=True)
class WriteOutcome:
    written: int = 0
    already_stored: int = 0  # redeliveries and producer duplicates, not written again
    rejected: list[tuple[EventRow, str]] = field(default_factory=list)


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

    def write(self, rows: Sequence[EventRow]) -> WriteOutcome:
        if self._tracer is None:
            return self._write(rows)
        entries = [(row.entry_id, row.fields) for row in rows]
        with batch_spans(self._tracer, "analytics insert", entries, _SPAN_ATTRIBUTES) as traced:
            outcome = self._write(rows)
            for row, error in outcome.rejected:
                traced.fail(row.entry_id, error)
            traced.span.set_attribute("watchllm.rows_written", outcome.written)
            traced.span.set_attribute("watchllm.already_stored", outcome.already_stored)
        return outcome

    def _write(self, rows: Sequence[EventRow]) -> WriteOutcome:
        unique = list({row.event_id_bytes: row for row in reversed(rows)}.values())
        stored = self._stored_ids(unique)
        fresh = [row for row in unique if row.event_id_bytes not in stored]
        outcome = WriteOutcome(already_stored=len(rows) - len(fresh))
        outcome.rejected = self._insert_isolating(fresh)
        outcome.written = len(fresh) - len(outcome.rejected)
        return outcome

    def _stored_ids(self, rows: Sequence[EventRow]) -> set[bytes]:
        """The 16-byte ids of ``rows`` already in the table."""
        if not rows:
            return set()
        moments = [row.occurred_at for row in rows]
        ids = b"".join([row.event_id_bytes for row in rows])
        parameters = {
            "projects": sorted(UUID(bytes=p) for p in {row.project_id_bytes for row in rows}),
            "first": min(moments),
            "last": max(moments),
            # 32 hex digits an id, comma-separated, built in C; escaping it character by
            # character (what a str parameter gets) cost more than the lookup itself.
            "ids": Verbatim(ids.hex(",", 16)),
        }
        result = call(partial(self._client.query, _STORED_IDS, parameters=parameters))
        return {row[0].bytes for row in result.result_rows}

    def _insert_isolating(self, rows: list[EventRow]) -> list[tuple[EventRow, str]]:
        """Insert ``rows``; the rows ClickHouse refuses even alone, with its reason."""
        if not rows:
            return []
        try:
            self._insert_rows(rows)
        except RowsRejected as exc:
            if len(rows) == 1:
                return [(rows[0], str(exc))]
            middle = len(rows) // 2
            return self._insert_isolating(rows[:middle]) + self._insert_isolating(rows[middle:])
        return []

    def _insert_rows(self, rows: list[EventRow]) -> None:
        call(lambda: self._client.insert_arrow("requests", to_arrow(rows)))
