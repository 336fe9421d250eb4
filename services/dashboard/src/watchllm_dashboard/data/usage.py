"""The analytics questions the pages ask, over the shared query definitions.

Which definition answers depends on the filters: without one, the queries that read
the hourly projection (for the window's whole hours, rows for its ends); a model filter
keeps to the projection too; a key filter (the projection has no key column) reads the
rows of that project and window. Window-wide latency percentiles from the projection
cover the whole hours the window touches; those read from rows cover the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pandas as pd

from watchllm_dashboard.data.analytics import AnalyticsReader
from watchllm_dashboard.data.window import TimeWindow

USAGE_COLUMNS = ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens",
                 "cost_usd", "cost_saved_usd")  # fmt: skip
LATENCY_COLUMNS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
OUTCOME_COLUMNS = ("requests", "ok", "rate_limited", "errors", "exact_hits", "semantic_hits",
                   "misses", "bypassed", "cost_saved_usd")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Overview:
    totals: dict[str, Any]  # the USAGE_COLUMNS, rate_limited, unpriced, p50/p95/p99
    hourly: pd.DataFrame  # one row per hour of the window, zeros where nothing happened
    percentiles_exact: bool  # False: over the whole hours the window touches
    unpriced: dict[str, int]  # model -> requests without a price, most first
    flags: pd.DataFrame  # refusals_and_unpriced with the same filters


def _empty_totals() -> dict[str, Any]:
    totals: dict[str, Any] = dict.fromkeys(USAGE_COLUMNS, 0)
    totals.update(latency_p50_ms=None, latency_p95_ms=None, latency_p99_ms=None)
    return totals


def _totals(frame: pd.DataFrame) -> dict[str, Any]:
    if frame.empty or not frame.iloc[0]["requests"]:
        return _empty_totals()
    row = frame.iloc[0].to_dict()
    return {
        k: row[k] for k in (*USAGE_COLUMNS, "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    }


def fill_hours(frame: pd.DataFrame, window: TimeWindow, counts: tuple[str, ...],
               others: tuple[str, ...] = ()) -> pd.DataFrame:  # fmt: skip
    """Every hour of the window: ``counts`` are 0 and ``others`` (latencies) gaps where
    nothing happened."""
    hours = pd.DatetimeIndex(pd.to_datetime(window.hours(), utc=True), name="hour")
    filled = frame.set_index("hour").reindex(hours)
    for column in counts:
        filled[column] = pd.to_numeric(filled[column]).fillna(0)
    for column in others:
        filled[column] = pd.to_numeric(filled[column])
    return filled.reset_index()


def refusals_and_unpriced(
    reader: AnalyticsReader,
    project_id: UUID,
    window: TimeWindow,
    model: str = "",
    key_id: UUID | None = None,
) -> pd.DataFrame:
    """Per hour and model: the project's own 429s, and requests whose model had no price
    (``unpriced_requests``, with ``unpriced_tokens``). Only hours and models with either."""
    params = {"project_id": project_id, **window.params(), "model": model, "key_id": key_id}
    return reader.query("project_refusals_and_unpriced", params)


def unpriced_models(flags: pd.DataFrame) -> dict[str, int]:
    per_model = (
        flags.groupby("model")["unpriced_requests"].sum() if not flags.empty else pd.Series()
    )
    per_model = per_model[per_model > 0].sort_values(ascending=False)
    return {str(model): int(count) for model, count in per_model.items()}


def overview(
    reader: AnalyticsReader,
    project_id: UUID,
    window: TimeWindow,
    model: str = "",
    key_id: UUID | None = None,
) -> Overview:
    base: dict[str, Any] = {"project_id": project_id, **window.params()}
    if key_id is not None:
        keyed = {**base, "key_id": key_id, "model": model}
        totals = _totals(reader.query("project_key_totals", keyed))
        hourly = reader.query("project_key_usage_by_hour", keyed)
    elif model:
        by_model = reader.query("project_usage_by_model", base)
        totals = _totals(by_model[by_model["model"] == model].reset_index(drop=True))
        hourly = reader.query("project_model_usage_by_hour", {**base, "model": model})
    else:
        totals = _totals(reader.query("project_totals", base))
        hourly = reader.query("project_usage_by_hour", base)
    flags = refusals_and_unpriced(reader, project_id, window, model, key_id)
    totals["rate_limited"] = int(flags["rate_limited"].sum()) if not flags.empty else 0
    totals["unpriced"] = int(flags["unpriced_requests"].sum()) if not flags.empty else 0
    hourly = hourly.drop(columns=["latency_quantiles"], errors="ignore")
    filled = fill_hours(hourly, window, USAGE_COLUMNS, LATENCY_COLUMNS)
    filled["rate_limited"] = per_hour(flags, "rate_limited", filled["hour"])
    return Overview(totals, filled, percentiles_exact=key_id is not None,
                    unpriced=unpriced_models(flags), flags=flags)  # fmt: skip


def per_hour(flags: pd.DataFrame, column: str, hours: pd.Series) -> pd.Series:
    """``flags[column]`` summed per hour, for each of ``hours`` (0 where none)."""
    if flags.empty:
        return pd.Series(0, index=hours.index, dtype="int64")
    sums = {pd.Timestamp(h): int(n) for h, n in flags.groupby("hour")[column].sum().items()}
    return hours.map(lambda hour: sums.get(pd.Timestamp(hour), 0)).astype("int64")


def by_model(reader: AnalyticsReader, project_id: UUID, window: TimeWindow) -> pd.DataFrame:
    frame = reader.query("project_usage_by_model", {"project_id": project_id, **window.params()})
    return frame.drop(columns=["latency_quantiles"], errors="ignore")


def with_flags(by_model: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """``by_model`` with each model's own 429s (``rate_limited``) and requests without a
    price (``unpriced_requests``), from ``flags`` (refusals_and_unpriced of the same project)."""
    frame = by_model.copy()
    for column in ("rate_limited", "unpriced_requests"):
        counts = {} if flags.empty else flags.groupby("model")[column].sum().to_dict()
        frame[column] = [int(counts.get(model, 0)) for model in frame["model"]]
    return frame


BY_KEY_AND_MODEL_LIMIT = 500


def by_key_and_model(reader: AnalyticsReader, project_id: UUID, window: TimeWindow) -> pd.DataFrame:
    """Requests, tokens, spend, savings and requests without a price per key and model
    (reads the window's rows: the projection has no key), the pairs that spent most
    first, at most ``BY_KEY_AND_MODEL_LIMIT``."""
    params = {"project_id": project_id, **window.params(), "limit": BY_KEY_AND_MODEL_LIMIT}
    return reader.query("project_usage_by_key_and_model", params)


def by_project(reader: AnalyticsReader, window: TimeWindow) -> pd.DataFrame:
    """Every project's usage, with its own 429s and its requests without a price."""
    usage = reader.query("usage_by_project", window.params())
    flags = reader.query("refusals_and_unpriced_by_project", window.params())
    merged = usage.merge(flags, on="project_id", how="left")
    for column in ("rate_limited", "unpriced_requests"):
        merged[column] = pd.to_numeric(merged[column]).fillna(0).astype("int64")
    return merged


def outcomes(reader: AnalyticsReader, project_id: UUID, window: TimeWindow) -> pd.DataFrame:
    frame = reader.query("project_outcomes_by_hour", {"project_id": project_id, **window.params()})
    return fill_hours(frame, window, OUTCOME_COLUMNS)


def cache_entry_hits(
    reader: AnalyticsReader, project_id: UUID, window: TimeWindow, limit: int = 500
) -> dict[str, int]:
    """Hits per cache entry (its exact-layer key) in the window, most first."""
    frame = reader.query(
        "project_cache_entry_hits", {"project_id": project_id, **window.params(), "limit": limit}
    )
    pairs = zip(frame["cache_key"], frame["hits"], strict=True)
    return {str(key): int(hits) for key, hits in pairs}


def errors(reader: AnalyticsReader, project_id: UUID, window: TimeWindow) -> pd.DataFrame:
    return reader.query("project_errors", {"project_id": project_id, **window.params()})


def key_activity(reader: AnalyticsReader, project_id: UUID, window: TimeWindow) -> pd.DataFrame:
    return reader.query("project_key_activity", {"project_id": project_id, **window.params()})


@dataclass(frozen=True, slots=True)
class RequestPage:
    rows: pd.DataFrame
    total: int
    page: int
    pages: int


def request_page(
    reader: AnalyticsReader, filters: dict[str, Any], page: int, page_size: int
) -> RequestPage:
    """Page ``page`` (1-based) of the filtered request log, newest first."""
    total = int(reader.query("project_request_log_count", filters).iloc[0]["requests"])
    pages = max(1, -(-total // page_size))
    page = min(max(1, page), pages)
    offset = min((page - 1) * page_size, 1_000_000)
    rows = reader.query("project_request_log", {**filters, "offset": offset, "limit": page_size})
    return RequestPage(rows, total, page, pages)
