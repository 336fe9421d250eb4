"""Rate limits: usage against every limit now, spend against budget (and, for admins,
the budgets' form), and the 429s over time."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data import usage
from watchllm_dashboard.views import budgets, charts, ui
from watchllm_dashboard.views.context import PageContext


def _usage_now(ctx: PageContext) -> None:
    assert ctx.project is not None
    keys = ctx.actions.keys(ctx.project.name)
    labels = {k.id: budgets.key_label(k) for k in keys}
    limits = ctx.actions.limits(ctx.project)
    st.subheader("Usage now")
    st.caption(
        f"Plan {ctx.project.plan.value}: {limits.requests_per_day:,} requests per UTC day."
        " Per-minute limits slide over the last 60 s."
    )
    for item in ctx.actions.limit_usage(limits, labels):
        reset = ""
        if item.resets_in_seconds is not None:
            reset = f" · resets in {fmt.span(item.resets_in_seconds)}"
        text = (
            f"{ui.plain(item.scope)} · {item.kind}: {item.used:,} of {item.limit:,} "
            f"({fmt.percent(item.used, item.limit)}){reset}"
        )
        st.progress(item.share, text=text)
    if limits.rpm is None and limits.tpm is None and not limits.key_limits:
        st.caption("No per-minute limits: set them under Projects & settings.")


def _per_key(ctx: PageContext) -> None:
    assert ctx.project is not None
    activity = usage.key_activity(ctx.analytics, ctx.project.id, ctx.window)
    st.subheader("Per key")
    st.caption(f"Requests and 429s per key, {ctx.window.describe()}")
    keys = ctx.actions.keys(ctx.project.name)
    if not keys:
        st.caption("This project has no keys.")
        return
    by_id = activity.set_index("key_id") if not activity.empty else pd.DataFrame()
    rows = []
    for key in keys:
        stats = by_id.loc[str(key.id)] if str(key.id) in by_id.index else None
        rows.append(
            {
                "key": f"{key.name or 'unnamed'} ({key.display_prefix}…)",
                "requests": fmt.count(stats["requests"] if stats is not None else 0),
                "429s": fmt.count(stats["rate_limited"] if stats is not None else 0),
                "rpm limit": "—" if key.rpm_limit is None else f"{key.rpm_limit:,}",
                "tpm limit": "—" if key.tpm_limit is None else f"{key.tpm_limit:,}",
                "state": "revoked" if key.revoked_at else "active",
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True)


def render(ctx: PageContext) -> None:
    st.header("Rate limits")
    ui.show_flash()
    project = ctx.require_project()
    if project is None:
        return
    _usage_now(ctx)
    budgets.render(ctx, project)
    st.subheader("Refused over time")
    st.caption(ctx.window.describe())
    hourly = usage.outcomes(ctx.analytics, project.id, ctx.window)
    st.metric(
        "Requests refused with 429",
        fmt.count(hourly["rate_limited"].sum()),
        help=ctx.window.describe(),
        border=True,
    )
    charts.stacked_bars(
        hourly,
        {"rate_limited": "429 rate limited"},
        "429s per hour",
        "requests",
        {"429 rate limited": "#e45756"},
    )
    _per_key(ctx)
