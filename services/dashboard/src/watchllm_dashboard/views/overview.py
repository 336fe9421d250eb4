"""Overview: how much traffic, how many errors, how well the cache works, what it costs,
how fast it is — for one project, optionally one model or key, over the time range."""

from __future__ import annotations

from uuid import UUID

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data import usage
from watchllm_dashboard.data.window import TimeWindow
from watchllm_dashboard.views import charts
from watchllm_dashboard.views.context import PageContext

ALL = "All"


def _filters(ctx: PageContext, models: list[str]) -> tuple[str, UUID | None]:
    assert ctx.project is not None
    keys = ctx.actions.keys(ctx.project.name)
    labels = {f"{k.name or 'unnamed'} ({k.display_prefix}…)": k.id for k in keys}
    left, right = st.columns(2)
    model = left.selectbox("Model", [ALL, *models], key="overview_model")
    key = right.selectbox("API key", [ALL, *labels], key="overview_key")
    return ("" if model == ALL else str(model)), (None if key == ALL else labels[str(key)])


def _metrics(result: usage.Overview, window: TimeWindow) -> None:
    totals = result.totals
    requests = totals["requests"]
    first, second = st.columns(4), st.columns(4)
    first[0].metric("Requests", fmt.count(requests), border=True)
    first[1].metric("Error rate", fmt.percent(totals["errors"], requests), border=True)
    first[2].metric("From the cache", fmt.percent(totals["cache_hits"], requests), border=True,
                    help="Share of all requests answered from the cache; the Cache page"
                    " gives the hit rate of the requests that asked it.")  # fmt: skip
    first[3].metric("Spend", fmt.money(totals["cost_usd"]), border=True)
    second[0].metric("Saved by the cache", fmt.money(totals["cost_saved_usd"]), border=True)
    covers = (
        "the time range"
        if result.percentiles_exact
        else f"the whole hours {window.percentile_hours()} (percentiles come from the hourly"
        " rollup and cannot be cut at the range's ends)"
    )
    for cell, q in zip(second[1:], ("p50", "p95", "p99"), strict=True):
        cell.metric(f"Latency {q}", fmt.duration_ms(totals[f"latency_{q}_ms"]), border=True,
                    help=f"Over {covers}.")  # fmt: skip


def _charts(hourly: pd.DataFrame) -> None:
    data = hourly.copy()
    data["succeeded"] = data["requests"] - data["errors"]
    left, right = st.columns(2)
    with left:
        charts.stacked_bars(
            data,
            {"succeeded": "succeeded", "errors": "failed"},
            "Requests per hour",
            "requests",
            {"succeeded": "#4c78a8", "failed": "#e45756"},
        )
    with right:
        charts.lines(
            data,
            {"cost_usd": "spend", "cost_saved_usd": "saved by cache"},
            "Spend per hour (USD)",
            "USD",
            "$,.3~r",
            colors={"spend": "#f58518", "saved by cache": "#54a24b"},
        )
    left, right = st.columns(2)
    with left:
        charts.lines(
            data,
            {"latency_p50_ms": "p50", "latency_p95_ms": "p95", "latency_p99_ms": "p99"},
            "Latency (ms)",
            "ms",
        )
    with right:
        data["hit_rate"] = data["cache_hits"] / data["requests"].where(data["requests"] > 0)
        charts.lines(data, {"hit_rate": "answered from the cache"}, "Answered from the cache",
                     "share", ".0%")  # fmt: skip


def _by_model(frame: pd.DataFrame) -> None:
    st.subheader("By model")
    if frame.empty:
        st.caption("No requests in this range.")
        return
    table = pd.DataFrame(
        {
            "model": frame["model"],
            "requests": frame["requests"].map(fmt.count),
            "error rate": [
                fmt.percent(e, r) for e, r in zip(frame["errors"], frame["requests"], strict=True)
            ],
            "from cache": [
                fmt.percent(h, r)
                for h, r in zip(frame["cache_hits"], frame["requests"], strict=True)
            ],
            "spend": frame["cost_usd"].map(fmt.money),
            "saved": frame["cost_saved_usd"].map(fmt.money),
            "p95 latency": frame["latency_p95_ms"].map(fmt.duration_ms),
        }
    )
    st.dataframe(table, hide_index=True)


def _all_projects(ctx: PageContext) -> None:
    st.subheader("All projects")
    frame = usage.by_project(ctx.analytics, ctx.window)
    if frame.empty:
        st.caption("No requests in this range.")
        return
    names = {str(p.id): p.name for p in ctx.actions.projects()}
    table = pd.DataFrame(
        {
            "project": frame["project_id"].map(lambda i: names.get(i, i)),
            "requests": frame["requests"].map(fmt.count),
            "error rate": [
                fmt.percent(e, r) for e, r in zip(frame["errors"], frame["requests"], strict=True)
            ],
            "spend": frame["cost_usd"].map(fmt.money),
            "saved": frame["cost_saved_usd"].map(fmt.money),
        }
    )
    st.dataframe(table, hide_index=True)


def render(ctx: PageContext) -> None:
    st.header("Overview")
    project = ctx.require_project()
    if project is None:
        return
    st.caption(f"Project **{project.name}** · {ctx.window.describe()}")
    models = usage.by_model(ctx.analytics, project.id, ctx.window)
    model, key = _filters(ctx, [str(m) for m in models["model"]])
    result = usage.overview(ctx.analytics, project.id, ctx.window, model, key)
    _metrics(result, ctx.window)
    _charts(result.hourly)
    _by_model(models)
    _all_projects(ctx)
