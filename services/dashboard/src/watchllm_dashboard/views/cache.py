"""Cache: how often each layer answers, what it saves, what is cached now; delete one
entry or flush the project (admins)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data import usage
from watchllm_dashboard.data.cache_entries import CachedEntry
from watchllm_dashboard.views import charts, ui
from watchllm_dashboard.views.context import PageContext

LAYERS = {
    "exact_hits": "exact hits",
    "semantic_hits": "semantic hits",
    "misses": "misses",
    "bypassed": "bypassed",
}
COLORS = {
    "exact hits": "#54a24b",
    "semantic hits": "#88d27a",
    "misses": "#e45756",
    "bypassed": "#bab0ac",
}


def _summary(ctx: PageContext, hourly: pd.DataFrame) -> None:
    assert ctx.project is not None
    settings = ctx.actions.cache_settings(ctx.project.name)
    state = (f"on, {settings.mode} mode, entries kept {settings.ttl_seconds:,} s"
             if settings.enabled else "off")  # fmt: skip
    st.caption(
        f"Project **{ui.plain(ctx.project.name)}** · cache {state} · {ctx.window.describe()}"
    )
    cells = st.columns(4)
    hits = hourly["exact_hits"].sum() + hourly["semantic_hits"].sum()
    asked = hits + hourly["misses"].sum()  # bypassed and refused requests never asked
    cells[0].metric(
        "Hit rate",
        fmt.percent(hits, asked),
        border=True,
        help="Of the requests that asked the cache: hits / (hits + misses).",
    )
    cells[1].metric("Exact hits", fmt.count(hourly["exact_hits"].sum()), border=True)
    cells[2].metric("Semantic hits", fmt.count(hourly["semantic_hits"].sum()), border=True)
    cells[3].metric("Saved", fmt.money(hourly["cost_saved_usd"].sum()), border=True)
    everything = hourly["requests"].sum()
    st.caption(
        f"Hit rate: {fmt.count(hits)} hits of the {fmt.count(asked)} requests that asked the"
        f" cache (hits and misses; bypassed and refused requests never ask it). Of all"
        f" {fmt.count(everything)} requests, {fmt.percent(hits, everything)} were answered"
        ' from the cache (the Overview\'s "From the cache").'
    )


def _question(entry: CachedEntry) -> str:
    if not entry.question_known:
        return "(not known: stored before the cache's store log begins)"
    return entry.question or "(exact layer only)"


def _entries_table(entries: list[CachedEntry], hits: dict[str, int]) -> None:
    st.dataframe(
        pd.DataFrame(
            {
                "hits": [hits.get(e.key, 0) for e in entries],
                "stored (UTC)": [
                    e.stored_at.strftime("%Y-%m-%d %H:%M") if e.stored_at else "earlier"
                    for e in entries
                ],
                "question": [_question(e) for e in entries],
                "answer": [e.answer for e in entries],
                "model": [e.model for e in entries],
                "each hit saves": [fmt.money(e.saves_usd) for e in entries],
                "tokens": [
                    f"{fmt.count(e.prompt_tokens)} / {fmt.count(e.completion_tokens)}"
                    for e in entries
                ],
                "expires in": [fmt.span(e.expires_in_seconds) for e in entries],
            }
        ),
        hide_index=True,
    )


def _manage(ctx: PageContext, entries: list[CachedEntry]) -> None:
    assert ctx.project is not None
    st.subheader("Remove cached answers")
    ui.viewer_note(ctx.is_admin)
    left, right = st.columns(2)
    with left:
        labels = {f"{(e.question or e.answer)[:80]} · {e.key[-12:]}": e.key for e in entries}
        choice = st.selectbox(
            "Entry", list(labels) or ["(none)"], key="cache_entry", disabled=not entries
        )
        if st.button(
            "Delete this entry", key="cache_delete", disabled=not (ctx.is_admin and entries)
        ):
            ui.attempt(
                lambda: ctx.actions.delete_cache_entry(labels[str(choice)]),
                "Deletion sent to the cache service; it applies it within a second.",
            )
    with right:
        sure = st.checkbox(
            f"Yes, drop every cached answer of {ui.plain(ctx.project.name)}",
            key="cache_flush_confirm",
            disabled=not ctx.is_admin,
        )
        if st.button(
            "Flush the project's cache",
            key="cache_flush",
            type="primary",
            disabled=not (ctx.is_admin and sure),
        ):
            project = ctx.project.name
            ui.attempt(
                lambda: ctx.actions.flush_cache(project),
                f"Flush of {ui.plain(project)} sent to the cache service.",
            )


def render(ctx: PageContext) -> None:
    st.header("Cache")
    ui.show_flash()
    project = ctx.require_project()
    if project is None:
        return
    hourly = usage.outcomes(ctx.analytics, project.id, ctx.window)
    _summary(ctx, hourly)
    charts.shares(hourly, LAYERS, "requests", "How requests were answered, per hour", COLORS)
    charts.lines(
        hourly, {"cost_saved_usd": "saved"}, "Saved by the cache per hour (USD)", "USD", "$,.3~r"
    )
    st.subheader("Top cached prompts")
    # Ranked by hits over the window first (the analytics count them per entry), then
    # the live entries among them; the newest others fill the table.
    hits = usage.cache_entry_hits(ctx.analytics, project.id, ctx.window)
    entries = ctx.actions.cached_entries(project, list(hits))
    if entries:
        _entries_table(entries, hits)
    else:
        st.caption("Nothing cached for this project right now.")
    st.caption(
        "Live entries only (expired, flushed and deleted ones are gone); hits are"
        " counted over the selected window, ties listed newest first."
    )
    _manage(ctx, entries)
