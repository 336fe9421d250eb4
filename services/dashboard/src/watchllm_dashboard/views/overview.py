"""Overview: how much traffic, how many errors, how well the cache works, what it costs
(and to whom: spend and tokens per key and model, usage per end user or custom
property), how fast it is, which upstream deployments answered — for one project,
optionally one model or key, over the time range."""

from __future__ import annotations

from uuid import UUID

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data import usage
from watchllm_dashboard.data.window import TimeWindow
from watchllm_dashboard.views import attribution, charts, deployments, link, ui
from watchllm_dashboard.views.context import PageContext

ALL = "All"


def _filters(ctx: PageContext, models: list[str]) -> tuple[str, UUID | None]:
    assert ctx.project is not None
    keys = ctx.actions.keys(ctx.project.name)
    labels = {f"{k.name or 'unnamed'} ({k.display_prefix}…)": k.id for k in keys}
    link.choose("model", "overview_model", {m: m for m in models})
    link.choose("key", "overview_key", {str(i): label for label, i in labels.items()})
    left, right = st.columns(2)
    model = left.selectbox("Model", [ALL, *models], key="overview_model")
    key = right.selectbox("API key", [ALL, *labels], key="overview_key")
    link.keep("model", "" if model == ALL else str(model))
    link.keep("key", "" if key == ALL else str(labels[str(key)]))
    return ("" if model == ALL else str(model)), (None if key == ALL else labels[str(key)])


PRICES_HELP = (
    "Add their prices with WATCHLLM_PRICES or WATCHLLM_PRICE_TABLE_PATH (README,"
    " Configuration: JSON per model, USD per million input and output tokens) and restart"
    " the gateway; requests already recorded keep $0.00."
)


def _failed(errors: float, rate_limited: float) -> float:
    """Failures of the service or the request, without the project's own 429s."""
    return errors - rate_limited


def _metrics(result: usage.Overview, window: TimeWindow) -> None:
    totals = result.totals
    requests = totals["requests"]
    first, second = st.columns(5), st.columns(6)
    first[0].metric("Requests", fmt.count(requests), border=True)
    failed = _failed(totals["errors"], totals["rate_limited"])
    first[1].metric("Error rate", fmt.percent(failed, requests), border=True,
                    help="Failed requests (upstream errors and timeouts, bad keys or"
                    " requests, a store down) of all requests; the project's own 429s are"
                    " apart.")  # fmt: skip
    first[2].metric("Rate limited (429)", fmt.percent(totals["rate_limited"], requests),
                    border=True, help="Refused by the project's own limits (per minute, per"
                    " day): the limits working, not a failure.")  # fmt: skip
    first[3].metric("From the cache", fmt.percent(totals["cache_hits"], requests), border=True,
                    help="Of all requests. The Cache page's hit rate is of the requests that"
                    " asked the cache (hits and misses).")  # fmt: skip
    first[4].metric("Spend", fmt.money(totals["cost_usd"]), border=True)
    second[0].metric("Saved by the cache", fmt.money(totals["cost_saved_usd"]), border=True)
    second[1].metric("Tokens in", fmt.count(totals["prompt_tokens"]), border=True,
                     help="Prompt tokens of the requests in the range.")  # fmt: skip
    second[2].metric("Tokens out", fmt.count(totals["completion_tokens"]), border=True,
                     help="Completion tokens of the requests in the range.")  # fmt: skip
    covers = (
        "the time range"
        if result.percentiles_exact
        else f"the whole hours {window.percentile_hours()} (percentiles come from the hourly"
        " rollup and cannot be cut at the range's ends)"
    )
    for cell, q in zip(second[3:], ("p50", "p95", "p99"), strict=True):
        cell.metric(f"Latency {q}", fmt.duration_ms(totals[f"latency_{q}_ms"]), border=True,
                    help=f"Over {covers}.")  # fmt: skip
    st.caption(
        f"Shares are of all {fmt.count(requests)} requests in the range. The Cache page's"
        " hit rate counts only the requests that asked the cache (hits and misses; bypassed"
        " and refused requests never ask it)."
    )
    if result.unpriced:
        models = ", ".join(
            f"{ui.plain(model)} ({fmt.count(n)})" for model, n in result.unpriced.items()
        )
        st.warning(
            f"{fmt.count(totals['unpriced'])} requests used models without a price: {models}."
            f" Their cost counts as $0.00 in Spend (and their cached answers save $0.00)."
            f" {PRICES_HELP}"
        )


def _charts(hourly: pd.DataFrame) -> None:
    data = hourly.copy()
    data["failed"] = _failed(data["errors"], data["rate_limited"])
    data["succeeded"] = data["requests"] - data["errors"]
    left, right = st.columns(2)
    with left:
        charts.stacked_bars(
            data,
            {"succeeded": "succeeded", "rate_limited": "rate limited (429)", "failed": "failed"},
            "Requests per hour",
            "requests",
            {"succeeded": "#4c78a8", "rate limited (429)": "#f2cf5b", "failed": "#e45756"},
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


def _spend(frame: pd.DataFrame) -> list[str]:
    """Spend per row, and how many of its requests had no price (counted at $0)."""
    rows = zip(frame["cost_usd"], frame["unpriced_requests"], strict=True)
    return [fmt.money(cost) + (f" + {fmt.count(unpriced)} without a price" if unpriced else "")
            for cost, unpriced in rows]  # fmt: skip


def _rates(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The error rate (without 429s) and the 429s' share, per row."""
    requests, errors, limited = frame["requests"], frame["errors"], frame["rate_limited"]
    return {
        "error rate": [fmt.percent(_failed(e, r), n)
                       for e, r, n in zip(errors, limited, requests, strict=True)],
        "429s": [fmt.percent(r, n) for r, n in zip(limited, requests, strict=True)],
    }  # fmt: skip


def _by_model(frame: pd.DataFrame) -> None:
    st.subheader("By model")
    if frame.empty:
        st.caption("No requests in this range.")
        return
    table = pd.DataFrame(
        {
            "model": frame["model"],
            "requests": frame["requests"].map(fmt.count),
            **_rates(frame),
            "from cache": [
                fmt.percent(h, r)
                for h, r in zip(frame["cache_hits"], frame["requests"], strict=True)
            ],
            "spend": _spend(frame),
            "saved": frame["cost_saved_usd"].map(fmt.money),
            "p95 latency": frame["latency_p95_ms"].map(fmt.duration_ms),
        }
    )
    st.dataframe(table, hide_index=True)


def _by_key_and_model(ctx: PageContext, project_id: UUID) -> None:
    """Who spent what on which model, in one table (not key by key through the filter)."""
    assert ctx.project is not None
    st.subheader("Spend and tokens by key and model")
    frame = usage.by_key_and_model(ctx.analytics, project_id, ctx.window)
    if frame.empty:
        st.caption("No requests in this range.")
        return
    names = {str(k.id): f"{k.name or 'unnamed'} ({k.display_prefix}…)"
             for k in ctx.actions.keys(ctx.project.name)}  # fmt: skip
    table = pd.DataFrame(
        {
            "key": frame["key_id"].map(lambda k: names.get(str(k), str(k)[:8])),
            "model": frame["model"],
            "requests": frame["requests"].map(fmt.count),
            "tokens in": frame["prompt_tokens"].map(fmt.count),
            "tokens out": frame["completion_tokens"].map(fmt.count),
            "spend": _spend(frame),
            "saved": frame["cost_saved_usd"].map(fmt.money),
        }
    )
    st.dataframe(table, hide_index=True)
    limit = usage.BY_KEY_AND_MODEL_LIMIT
    note = f" Only the {limit} pairs that spent most are listed." if len(frame) >= limit else ""
    st.caption(f"Every key and model with requests in the range, most spend first.{note}")


NO_PROJECT = "00000000-0000-0000-0000-000000000000"  # refused before a key named one
NO_PROJECT_LABEL = "(no project: key missing, malformed or unknown)"


def _all_projects(ctx: PageContext) -> None:
    st.subheader("All projects")
    frame = usage.by_project(ctx.analytics, ctx.window)
    if frame.empty:
        st.caption("No requests in this range.")
        return
    names = {str(p.id): p.name for p in ctx.actions.projects()}
    names[NO_PROJECT] = NO_PROJECT_LABEL
    table = pd.DataFrame(
        {
            "project": frame["project_id"].map(lambda i: names.get(i, i)),
            "requests": frame["requests"].map(fmt.count),
            **_rates(frame),
            "spend": _spend(frame),
            "saved": frame["cost_saved_usd"].map(fmt.money),
        }
    )
    st.dataframe(table, hide_index=True)
    unknown = frame[frame["project_id"] == NO_PROJECT]
    if not unknown.empty:
        st.caption(
            f"{fmt.count(unknown['requests'].iloc[0])} requests came with a key that is"
            " missing, malformed or unknown (refused with 401): attempts no project's key"
            " made. A revoked key's attempts count in its project (refused with 403)."
        )


def render(ctx: PageContext) -> None:
    st.header("Overview")
    project = ctx.require_project()
    if project is None:
        return
    st.caption(f"Project **{ui.plain(project.name)}** · {ctx.window.describe()}")
    models = usage.by_model(ctx.analytics, project.id, ctx.window)
    model, key = _filters(ctx, [str(m) for m in models["model"]])
    result = usage.overview(ctx.analytics, project.id, ctx.window, model, key)
    _metrics(result, ctx.window)
    _charts(result.hourly)
    flags = result.flags if not model and key is None else None
    if flags is None:
        flags = usage.refusals_and_unpriced(ctx.analytics, project.id, ctx.window)
    _by_model(usage.with_flags(models, flags))
    _by_key_and_model(ctx, project.id)
    _all_projects(ctx)
    attribution.breakdown(ctx, project.id)
    deployments.by_deployment(ctx, project.id)
