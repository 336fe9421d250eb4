"""Rows ready to store, as columns: one Arrow table plus the stream entries they came from.

A block is what travels from decoding to the writer: one per page of entries, several
per batch (``concat``). Row ``i`` of ``table`` (``rows.ARROW_SCHEMA``) came from the
stream entry ``entry_ids[i]`` (acknowledged once stored) whose fields were
``fields[i]`` (kept for the dead-letter stream and for tracing). Nothing here is per
row in Python except selecting rows (``take``), which the writer does only when a batch
holds duplicates or already-stored events.

Failure mode enforced here: a table whose length differs from its entries' is refused
at construction (``ValueError``): a row acknowledged for another entry's event would be
a silent loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from watchllm_analytics.rows import ARROW_SCHEMA, EventRow, to_arrow
from watchllm_analytics.stream_group import Fields

_ID_BYTES = 16


@dataclass(frozen=True, slots=True)
class RowBlock:
    table: pa.Table
    entry_ids: list[bytes]
    fields: list[Fields]

    def __post_init__(self) -> None:
        if not self.table.num_rows == len(self.entry_ids) == len(self.fields):
            raise ValueError(
                f"{self.table.num_rows} rows for {len(self.entry_ids)} entries"
                f" and {len(self.fields)} field sets"
            )

    def __len__(self) -> int:
        return len(self.entry_ids)

    @classmethod
    def empty(cls) -> RowBlock:
        return cls(ARROW_SCHEMA.empty_table(), [], [])

    @classmethod
    def from_rows(cls, rows: Sequence[EventRow]) -> RowBlock:
        """Rows decoded one by one (``rows.decode_entry``) as a block."""
        if not rows:
            return cls.empty()
        return cls(to_arrow(rows), [r.entry_id for r in rows], [r.fields for r in rows])

    @classmethod
    def concat(cls, blocks: Sequence[RowBlock]) -> RowBlock:
        blocks = [block for block in blocks if len(block)]
        if len(blocks) == 1:
            return blocks[0]
        if not blocks:
            return cls.empty()
        table = pa.concat_tables([block.table for block in blocks])
        entry_ids = [entry_id for block in blocks for entry_id in block.entry_ids]
        fields = [entry for block in blocks for entry in block.fields]
        return cls(table, entry_ids, fields)

    def take(self, indices: Sequence[int]) -> RowBlock:
        return RowBlock(
            self.table.take(pa.array(indices, pa.int64())),
            [self.entry_ids[i] for i in indices],
            [self.fields[i] for i in indices],
        )

    def slice(self, start: int, stop: int) -> RowBlock:
        return RowBlock(
            self.table.slice(start, stop - start),
            self.entry_ids[start:stop],
            self.fields[start:stop],
        )

    def event_ids(self) -> bytes:
        """The event ids, 16 bytes each, concatenated in row order (built in C)."""
        parts = []
        for chunk in self.table.column("event_id").chunks:
            data = chunk.buffers()[1]
            start = chunk.offset * _ID_BYTES
            parts.append(data[start : start + len(chunk) * _ID_BYTES].to_pybytes())
        return b"".join(parts)

    def distinct_event_ids(self) -> int:
        return int(pc.count_distinct(self.table.column("event_id")).as_py())

    def project_ids(self) -> list[UUID]:
        """The distinct projects, sorted."""
        distinct = pc.unique(self.table.column("project_id")).to_pylist()
        return sorted(UUID(bytes=project) for project in distinct)

    def time_range(self) -> tuple[datetime, datetime]:
        """The oldest and the newest ``occurred_at``; the block must not be empty."""
        bounds = pc.min_max(self.table.column("occurred_at")).as_py()
        return bounds["min"], bounds["max"]
