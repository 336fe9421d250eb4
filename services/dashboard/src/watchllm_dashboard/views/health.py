"""Health: each service and store as the gateway's /health sees them, corrected by what the
gateways see when they use them (their state reports: semantic-cache timeouts and breaker,
limiter fail-opens, events Redis refused; ``data/gateway_view.py``), plus the analytics
consumer's lag."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from redis.exceptions import RedisError

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data.gateway_view import (
    GatewayView,
    Verdict,
    judge_cache,
    judge_events,
    judge_limiter,
    read_gateway_view,
)
from watchllm_dashboard.data.health import fetch_health
from watchllm_dashboard.runtime import DashboardUnavailable
from watchllm_dashboard.views.context import PageContext
from watchllm_dashboard.views.ui import plain

_BADGE = {  # a store says connected/disconnected, a service up/degraded/down
    "healthy": "🟢",
    "connected": "🟢",
    "up": "🟢",  # also a store, from a gateway older than "connected"
    "degraded": "🟠",
    "unknown": "⚪",
    "disconnected": "🔴",
    "down": "🔴",
    "unhealthy": "🔴",
    "unreachable": "🔴",
}
_WHAT = {
    "database": "Postgres: projects, keys, settings, users",
    "redis": "Redis: events, limits, exact cache",
    "qdrant": "Qdrant: semantic cache index (reported by the cache service)",
    "clickhouse": "ClickHouse: request log (reported by analytics)",
    "limiter": "limiter service (heartbeat)",
    "cache": "cache service (heartbeat)",
    "analytics": "analytics service (heartbeat)",
    "events": "request events: the gateways' writes to Redis",
}


def render(ctx: PageContext) -> None:
    st.header("Health")
    settings = ctx.runtime.settings
    report = fetch_health(ctx.runtime.http, settings.gateway_url)
    unread: str | None = None
    try:
        view = ctx.runtime.run(read_gateway_view(ctx.runtime.redis), timeout=5.0)
    except (RedisError, DashboardUnavailable) as exc:  # /health's answer is still worth showing
        view, unread = GatewayView([], None), f"{type(exc).__name__}: {exc}"
    verdicts = {"cache": judge_cache(view), "limiter": judge_limiter(view),
                "events": judge_events(view)}  # fmt: skip
    status = report.status
    if status == "healthy" and any(v.state == "degraded" for v in verdicts.values()):
        status = "degraded"  # running, but not answering the gateways as they need
    st.subheader(f"{_BADGE.get(status, '⚪')} Gateway: {status}")
    if report.error:
        st.error(f"The gateway at {plain(settings.gateway_url)} did not answer: "
                 f"{plain(report.error)}")  # fmt: skip
    else:
        st.dataframe(pd.DataFrame(_rows(report.services, verdicts)), hide_index=True)
    for name, verdict in verdicts.items():
        for reason in verdict.reasons:
            st.warning(f"**{name}: degraded** — {plain(reason)}")
    _gateways(view, unread)
    analytics = fetch_health(ctx.runtime.http, settings.analytics_url)
    st.subheader(f"{_BADGE.get(analytics.status, '⚪')} Analytics service: {analytics.status}")
    if analytics.error:
        st.caption(f"{plain(settings.analytics_url)} did not answer: {plain(analytics.error)}")
        return
    group = analytics.detail.get("consumer_group") or {}
    cells = st.columns(4)
    cells[0].metric("ClickHouse", str(analytics.detail.get("clickhouse", "unknown")), border=True)
    cells[1].metric("Events waiting", fmt.count(group.get("lag")), border=True)
    cells[2].metric("Being stored", fmt.count(group.get("pending")), border=True)
    cells[3].metric("Dead letters", fmt.count(group.get("dead_letters")), border=True)
    if analytics.detail.get("last_write_error"):
        st.warning(f"Last ClickHouse write error: {plain(analytics.detail['last_write_error'])}")
    st.caption(f"Checked {fmt.moment(pd.Timestamp.now(tz='UTC').to_pydatetime())}")


def _rows(services: dict[str, str], verdicts: dict[str, Verdict]) -> list[dict[str, str]]:
    """One row per part: /health's state, made ``degraded`` by what the gateways see."""
    rows = []
    for name in [*services, *(n for n in verdicts if n not in services)]:
        verdict = verdicts.get(name)
        state = services.get(name) or (verdict.state if verdict else "unknown")
        if verdict is not None and verdict.state == "degraded" and state == "up":
            state = verdict.state
        rows.append({"": _BADGE.get(state, "⚪"), "part": name, "state": state,
                     "why": "; ".join(verdict.reasons) if verdict else "",
                     "what": _WHAT.get(name, "")})  # fmt: skip
    return rows


def _gateways(view: GatewayView, unread: str | None) -> None:
    st.subheader("What the gateways see")
    if unread is not None:
        st.caption(f"The gateways' reports could not be read from Redis ({plain(unread)}).")
        return
    if not view.states:
        st.caption("No gateway has reported in the last 15 s (gateways older than these"
                   " reports, or none running).")  # fmt: skip
        return
    rows = [
        {
            "gateway": s.instance,
            "reported": fmt.ago(s.at),
            "semantic timeouts (5 min)": s.recent.semantic_timeouts,
            "cache breaker": s.semantic_breaker or "cache off",
            "limiter fail-open (5 min)": s.recent.limiter_failed_open,
            "limiter fail-closed (5 min)": s.recent.limiter_failed_closed,
            "limiter": "not answering" if s.limiter_failing else "answering",
            "events buffered": s.events_buffered,
            "events dropped (5 min)": s.recent.events_dropped,
            "stores buffered": s.cache_stores_buffered,
        }
        for s in view.states
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    backlog = view.store_backlog
    if backlog is not None:
        st.caption(f"Answers waiting for the cache service to store them: {backlog.pending:,}"
                   f" being stored, {fmt.count(backlog.lag)} not yet read.")  # fmt: skip
