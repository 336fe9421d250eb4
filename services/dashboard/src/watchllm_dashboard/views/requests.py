"""Requests: the request log, searchable and paged, with the detail of one request."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data import usage
from watchllm_dashboard.views import ui
from watchllm_dashboard.views.context import PageContext
from watchllm_shared.contracts import RequestStatus

PAGE_SIZE = 50
ANY = "Any"


def _filters(ctx: PageContext, project_id: UUID) -> dict[str, Any]:
    assert ctx.project is not None
    models = [str(m) for m in usage.by_model(ctx.analytics, project_id, ctx.window)["model"]]
    keys = {
        f"{k.name or 'unnamed'} ({k.display_prefix}…)": k.id
        for k in ctx.actions.keys(ctx.project.name)
    }
    cells = st.columns([1, 1, 1, 2])
    status = cells[0].selectbox(
        "Status", [ANY, *[s.value for s in RequestStatus]], key="requests_status"
    )
    model = cells[1].selectbox("Model", [ANY, *models], key="requests_model")
    key = cells[2].selectbox("API key", [ANY, *keys], key="requests_key")
    search = cells[3].text_input(
        "Request, trace or event id, or its start",
        key="requests_search",
        help="Matches the ids that begin with what you type, as typed (no wildcards).",
    ).strip()
    return {
        "project_id": project_id,
        **ctx.window.params(),
        "status": "" if status == ANY else status,
        "model": "" if model == ANY else model,
        "key_id": None if key == ANY else keys[str(key)],
        "search": search[:200],
    }


def _table(rows: pd.DataFrame, key_names: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time (UTC)": rows["occurred_at"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "status": rows["status"],
            "HTTP": rows["http_status"],
            "model": rows["model"],
            "key": rows["key_id"].map(lambda k: key_names.get(k, str(k)[:8])),
            "cache": rows["cache"],
            "tokens in / out": [
                f"{fmt.count(p)} / {fmt.count(c)}"
                for p, c in zip(rows["prompt_tokens"], rows["completion_tokens"], strict=True)
            ],
            "cost": [_cost(c, u) for c, u in zip(rows["cost_usd"], rows["unpriced"], strict=True)],
            "latency": rows["latency_ms"].map(fmt.duration_ms),
            "request id": rows["request_id"],
        }
    )


def _cost(cost: float, unpriced: bool) -> str:
    return f"{fmt.money(cost)} (no price)" if unpriced else fmt.money(cost)


def _detail(row: pd.Series, key_names: dict[str, str]) -> None:
    st.subheader(f"Request {ui.plain(row['request_id'])}")
    # The status goes in a line of its own: in a quarter-width card "rate_limited (429)"
    # was cut off. The cards keep short values.
    error = f" · error {ui.plain(row['error_type'])}" if row["error_type"] else ""
    st.markdown(f"Status: **{row['status']}** (HTTP {row['http_status']}){error}")
    cells = st.columns(4)
    cells[0].metric("HTTP", str(row["http_status"]), border=True)
    cells[1].metric("Latency", fmt.duration_ms(row["latency_ms"]), border=True)
    cells[2].metric("Cost", fmt.money(row["cost_usd"]), border=True)
    cells[3].metric("Cache", str(row["cache"]), border=True)
    if row["unpriced"]:
        st.caption(
            f"No price for {ui.plain(row['model'])}: its cost counts as $0.00. Add one with"
            " WATCHLLM_PRICES or WATCHLLM_PRICE_TABLE_PATH (README, Configuration)."
        )
    similarity = row["cache_similarity"]
    fields = {
        "time": fmt.moment(row["occurred_at"].to_pydatetime()),
        "event id": row["event_id"],
        "trace id": row["trace_id"] or "—",
        "key": key_names.get(row["key_id"], row["key_id"]),
        "model / provider": f"{row['model']} / {row['provider']}",
        "endpoint": row["endpoint"],
        "stream": "yes" if row["stream"] else "no",
        "error type": row["error_type"] or "—",
        "cache similarity": "—" if pd.isna(similarity) else f"{similarity:.4f}",
        "prompt / completion tokens": f"{row['prompt_tokens']:,} / {row['completion_tokens']:,}",
        "saved by the cache": fmt.money(row["cost_saved_usd"]),
        "upstream latency": fmt.duration_ms(row["upstream_latency_ms"]),
        "time to first byte": fmt.duration_ms(row["ttfb_ms"]),
        "upstream attempts": row["upstream_attempts"],
    }
    # st.table renders Markdown in every cell.
    st.table(pd.DataFrame({"value": [ui.plain(v) for v in fields.values()]}, index=list(fields)))


def render(ctx: PageContext) -> None:
    st.header("Requests")
    project = ctx.require_project()
    if project is None:
        return
    filters = _filters(ctx, project.id)
    page_number = int(st.number_input("Page", min_value=1, value=1, step=1, key="requests_page"))
    page = usage.request_page(ctx.analytics, filters, page_number, PAGE_SIZE)
    st.caption(
        f"{fmt.count(page.total)} requests match · page {page.page} of {page.pages} · "
        f"{ctx.window.describe()}, newest first"
    )
    if page.rows.empty:
        st.info("No request matches these filters in this time range.")
        return
    key_names = {
        str(k.id): f"{k.name or 'unnamed'} ({k.display_prefix}…)"
        for k in ctx.actions.keys(project.name)
    }
    st.dataframe(_table(page.rows, key_names), hide_index=True)
    labels = [
        f"{t:%H:%M:%S} · {m} · {s} · {r}"
        for t, m, s, r in zip(
            page.rows["occurred_at"],
            page.rows["model"],
            page.rows["status"],
            page.rows["request_id"],
            strict=True,
        )
    ]
    choice = st.selectbox(
        "Show the detail of",
        range(len(labels)),
        format_func=lambda i: labels[i],
        key="requests_detail",
    )
    _detail(page.rows.iloc[int(choice or 0)], key_names)
