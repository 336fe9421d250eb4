"""The Overview's traffic per upstream deployment (``contracts.routing_queries``): which
of the routes file's deployments answered the project's requests, their errors,
fallbacks, retries and latency. Deployment names come from the operator's routes file;
the table shows them as text all the same."""

from __future__ import annotations

from uuid import UUID

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.views.context import PageContext

LIMIT = 100


def by_deployment(ctx: PageContext, project_id: UUID) -> None:
    st.subheader("By deployment")
    frame = ctx.analytics.query(
        "project_usage_by_deployment", {"project_id": project_id, **ctx.window.params(),
                                        "limit": LIMIT}
    )  # fmt: skip
    if frame.empty:
        st.caption("No request in this range was answered by an upstream deployment.")
        return
    requests = frame["requests"]
    table = pd.DataFrame(
        {
            "deployment": frame["deployment"],
            "provider": frame["provider"],
            "requests": requests.map(fmt.count),
            "errors": [fmt.percent(e, n) for e, n in zip(frame["errors"], requests, strict=True)],
            "fallbacks": frame["fallbacks"].map(fmt.count),
            "retried": frame["retried"].map(fmt.count),
            "p50 latency": frame["latency_p50_ms"].map(fmt.duration_ms),
            "p95 latency": frame["latency_p95_ms"].map(fmt.duration_ms),
            "upstream p50": frame["upstream_p50_ms"].map(fmt.duration_ms),
        }
    )
    st.dataframe(table, hide_index=True)
    st.caption(
        "The routes file's deployments that answered, busiest first. Fallbacks: answers"
        " for a fallback model after the requested model's deployments failed; retried:"
        " answered after more than one upstream attempt. Cache hits and requests refused"
        " before reaching a deployment are not counted here."
    )
