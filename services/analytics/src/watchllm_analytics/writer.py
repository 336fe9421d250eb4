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

from watchllm_analytics.clickhouse import RowsRejected, call
from watchllm_analytics.rows import EventRow, to_arrow

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


class RequestLogWriter:
    def __init__(self, client: Client) -> None:
        self._client = client

    def write(self, rows: Sequence[EventRow]) -> WriteOutcome:
        unique = list({row.event_id: row for row in reversed(rows)}.values())
        stored = self._stored_ids(unique)
        fresh = [row for row in unique if row.event_id not in stored]
        outcome = WriteOutcome(already_stored=len(rows) - len(fresh))
        outcome.rejected = self._insert_isolating(fresh)
        outcome.written = len(fresh) - len(outcome.rejected)
        return outcome

    def _stored_ids(self, rows: Sequence[EventRow]) -> set[UUID]:
        if not rows:
            return set()
        parameters = {
            "projects": sorted({row.project_id for row in rows}),
            "first": min(row.occurred_at for row in rows),
            "last": max(row.occurred_at for row in rows),
            "ids": ",".join([str(row.event_id) for row in rows]),  # cheaper to bind than a list
        }
        result = call(partial(self._client.query, _STORED_IDS, parameters=parameters))
        return {row[0] for row in result.result_rows}

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
