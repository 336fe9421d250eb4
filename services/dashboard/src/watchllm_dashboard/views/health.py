"""Health: each service and store as the gateway's /health sees them, plus the analytics
consumer's lag."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data.health import fetch_health
from watchllm_dashboard.views.context import PageContext

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
}


def render(ctx: PageContext) -> None:
    st.header("Health")
    settings = ctx.runtime.settings
    report = fetch_health(ctx.runtime.http, settings.gateway_url)
    badge = _BADGE.get(report.status, "⚪")
    st.subheader(f"{badge} Gateway: {report.status}")
    if report.error:
        st.error(f"The gateway at {settings.gateway_url} did not answer: {report.error}")
    else:
        rows = [
            {"": _BADGE.get(state, "⚪"), "part": name, "state": state, "what": _WHAT.get(name, "")}
            for name, state in report.services.items()
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    analytics = fetch_health(ctx.runtime.http, settings.analytics_url)
    st.subheader(f"{_BADGE.get(analytics.status, '⚪')} Analytics service: {analytics.status}")
    if analytics.error:
        st.caption(f"{settings.analytics_url} did not answer: {analytics.error}")
        return
    group = analytics.detail.get("consumer_group") or {}
    cells = st.columns(4)
    cells[0].metric("ClickHouse", str(analytics.detail.get("clickhouse", "unknown")), border=True)
    cells[1].metric("Events waiting", fmt.count(group.get("lag")), border=True)
    cells[2].metric("Being stored", fmt.count(group.get("pending")), border=True)
    cells[3].metric("Dead letters", fmt.count(group.get("dead_letters")), border=True)
    if analytics.detail.get("last_write_error"):
        st.warning(f"Last ClickHouse write error: {analytics.detail['last_write_error']}")
    st.caption(f"Checked {fmt.moment(pd.Timestamp.now(tz='UTC').to_pydatetime())}")
