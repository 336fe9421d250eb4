"""The filtered request log as a file, CSV or JSONL, newest first.

Rows are read page by page (``project_request_log_export``, ``PAGE_ROWS`` a page, each
page the rows older than the last one of the page before, so the 20th page costs what
the first does) and each page is written out before the next is read: at no time is
more than one page held as rows. An export holds at most ``MAX_ROWS`` rows, the newest;
the page says so before the download when the filters match more (``capped``), and the
file's name says ``newest-<n>``.

Streamlit hands a download to the browser as one finished file, kept in memory until
the tab goes: the bound keeps that to tens of megabytes (about 35 MB of CSV and 60 MB
of JSONL at 100,000 rows). The file is made only when its button is pressed (a
deferred download, on a thread of its own), never on a page view.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from watchllm_dashboard.data.analytics import AnalyticsReader

MAX_ROWS = 100_000
PAGE_ROWS = 5_000
Kind = Literal["csv", "jsonl"]
MIME: dict[Kind, str] = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


@dataclass(frozen=True, slots=True)
class ExportPlan:
    matching: int  # rows the filters match
    rows: int  # rows the file will hold
    capped: bool

    @classmethod
    def of(cls, matching: int, max_rows: int | None = None) -> ExportPlan:
        bound = MAX_ROWS if max_rows is None else max_rows
        return cls(matching, min(matching, bound), matching > bound)

    def file_name(self, stem: str, kind: Kind) -> str:
        return f"{stem}-newest-{self.rows}.{kind}" if self.capped else f"{stem}.{kind}"


def pages(
    reader: AnalyticsReader,
    filters: Mapping[str, Any],
    max_rows: int = MAX_ROWS,
    page_rows: int = PAGE_ROWS,
) -> Iterator[pd.DataFrame]:
    """The filtered rows, newest first, ``page_rows`` at a time, ``max_rows`` in all."""
    cursor: dict[str, Any] = {}
    left = max_rows
    while left > 0:
        limit = min(page_rows, left)
        page = reader.query("project_request_log_export", {**filters, **cursor, "limit": limit})
        if page.empty:
            return
        yield page
        left -= len(page)
        if len(page) < limit:
            return
        last = page.iloc[-1]
        cursor = {"before_at": last["occurred_at"].to_pydatetime(),
                  "before_event": last["event_id"]}  # fmt: skip


def _portable(page: pd.DataFrame, kind: Kind) -> pd.DataFrame:
    """Times as ISO 8601 UTC to the millisecond (``2026-03-01T12:00:00.123Z``); in CSV,
    the properties as one JSON object a cell (JSON lines keep them an object)."""
    out = page.copy()
    out["occurred_at"] = out["occurred_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    if kind == "csv" and "properties" in out:
        out["properties"] = out["properties"].map(
            lambda p: json.dumps(dict(p or {}), ensure_ascii=False, sort_keys=True)
        )
    return out


def write(frames: Iterator[pd.DataFrame], kind: Kind, out: io.BufferedIOBase) -> int:
    """Each frame appended to ``out`` as CSV (one header) or JSON lines; the rows written."""
    written = 0
    for frame in frames:
        portable = _portable(frame, kind)
        if kind == "csv":
            text = portable.to_csv(index=False, header=written == 0, lineterminator="\n")
        else:
            text = portable.to_json(orient="records", lines=True, force_ascii=False)
            text = text if text.endswith("\n") else text + "\n"
        out.write(text.encode())
        written += len(frame)
    return written


def build(
    reader: AnalyticsReader, filters: Mapping[str, Any], kind: Kind, max_rows: int = MAX_ROWS
) -> bytes:
    """The whole file (a deferred download's callable)."""
    buffer = io.BytesIO()
    write(pages(reader, filters, max_rows), kind, buffer)
    return buffer.getvalue()
