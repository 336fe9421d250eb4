"""The filtered request log as a file, CSV or JSONL, newest first: every matching row.

Rows are read page by page (``project_request_log_export``, ``page_rows`` a page, each
page the rows older than the last one of the page before, so the 1,000th page costs
what the first does) and each page is turned into bytes and handed on before the next
is read: at no time is more than one page held, whatever the file's length. There is
no bound on the rows: the file is streamed to the browser by the dashboard's export
route (``export_route``), never assembled in memory (Streamlit's own download button
would hold the whole file, which is why the export is not one).

The format: CSV with one header line, or one JSON object a line; times as ISO 8601 UTC
to the millisecond (``2026-03-01T12:00:00.123Z``); the columns of
``contracts.request_log_queries.LOG_COLUMNS``, in that order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import pandas as pd

from watchllm_dashboard.data.analytics import AnalyticsReader

PAGE_ROWS = 5_000
Kind = Literal["csv", "jsonl"]
KINDS: tuple[Kind, ...] = ("csv", "jsonl")
MIME: dict[Kind, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def pages(
    reader: AnalyticsReader, filters: Mapping[str, Any], page_rows: int = PAGE_ROWS
) -> Iterator[pd.DataFrame]:
    """Every row the filters match, newest first, ``page_rows`` at a time; a page is
    read only when the one before has been taken."""
    cursor: dict[str, Any] = {}
    while True:
        page = reader.query("project_request_log_export", {**filters, **cursor, "limit": page_rows})
        if page.empty:
            return
        yield page
        if len(page) < page_rows:
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


def encoded(frames: Iterable[pd.DataFrame], kind: Kind) -> Iterator[bytes]:
    """Each frame as the file's next bytes: CSV (the header once, before the first row)
    or JSON lines. No frame, no bytes (an empty file)."""
    first = True
    for frame in frames:
        portable = _portable(frame, kind)
        if kind == "csv":
            text = portable.to_csv(index=False, header=first, lineterminator="\n")
        else:
            text = portable.to_json(orient="records", lines=True, force_ascii=False)
            text = text if text.endswith("\n") else text + "\n"
        first = False
        yield text.encode()


def file_name(stem: str, kind: Kind) -> str:
    return f"{stem}.{kind}"
