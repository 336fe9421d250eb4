"""The callers' custom properties and end users on the pages (``contracts.attribution_queries``):
the Requests page's filters (an end user; a property, and optionally its value) and the
Overview's breakdown by a chosen property or by end user.

Names, values and users come from callers: tables (``st.dataframe``) and inputs show
them as text, and anything rendered as Markdown goes through ``ui.plain``. Link names:
Requests ``user``, ``prop``, ``value``; Overview ``by`` (a property name; none: by end
user).
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.views import link
from watchllm_dashboard.views.context import PageContext
from watchllm_shared.contracts.attribution_queries import PROPERTY_NAME_PATTERN

ANY = "Any"
END_USER = "(end user)"  # the Overview's default choice: no property name looks like it
MAX_TEXT = 256  # characters of an end user or a property value (the gateway's bound)
NONE_SHOWN = "(none)"
_NAME = re.compile(PROPERTY_NAME_PATTERN).match


def property_names(ctx: PageContext, project_id: UUID) -> list[str]:
    frame = ctx.analytics.query(
        "project_property_names", {"project_id": project_id, **ctx.window.params()}
    )
    return [str(name) for name in frame["property"]] if not frame.empty else []


def _linked_name(name: str, state: str, names: list[str]) -> list[str]:
    """``names``, plus a linked property name the window does not show (a filter may match
    nothing) when it is a name the gateway could have stored."""
    wanted = link.take_one(name)
    if wanted is None:
        return names
    if not _NAME(wanted):
        link.refuse(name, wanted, "not a property name (a-z, 0-9, '.', '_', '-')")
        return names
    st.session_state[state] = wanted
    return names if wanted in names else [*names, wanted]


def _linked_text(name: str, state: str) -> None:
    wanted = link.take_one(name)
    if wanted is not None:
        st.session_state[state] = wanted[:MAX_TEXT]


def request_filters(ctx: PageContext, project_id: UUID) -> dict[str, str]:
    """The Requests page's end user and property filters, as the query's parameters."""
    names = _linked_name("prop", "requests_property", property_names(ctx, project_id))
    _linked_text("user", "requests_user")
    _linked_text("value", "requests_property_value")
    cells = st.columns([2, 1, 1])
    user = cells[0].text_input(
        "End user",
        key="requests_user",
        help="The requests made for this end user (exactly as sent).",
    )
    chosen = cells[1].selectbox("Property", [ANY, *names], key="requests_property")
    value = cells[2].text_input("Property value", key="requests_property_value",
                                disabled=chosen == ANY, help="Empty: any value.")  # fmt: skip
    prop = "" if chosen == ANY else str(chosen)
    user, value = user.strip()[:MAX_TEXT], value.strip()[:MAX_TEXT] if prop else ""
    link.keep("user", user)
    link.keep("prop", prop)
    link.keep("value", value)
    return {"end_user": user, "property": prop, "property_value": value}


def _choice(name: str) -> str:
    return "end user" if name == END_USER else f"property {name}"


def breakdown(ctx: PageContext, project_id: UUID) -> None:
    """The Overview's usage by end user or by a chosen property's values."""
    st.subheader("By end user or property")
    names = _linked_name("by", "overview_breakdown", property_names(ctx, project_id))
    by = st.selectbox("Break down by", [END_USER, *names], key="overview_breakdown",
                      format_func=_choice)  # fmt: skip
    link.keep("by", "" if by == END_USER else str(by))
    params: dict[str, Any] = {"project_id": project_id, **ctx.window.params(), "limit": 100}
    if by == END_USER:
        frame, label = ctx.analytics.query("project_usage_by_end_user", params), "end user"
        keys = frame["end_user"] if not frame.empty else pd.Series(dtype=str)
    else:
        frame = ctx.analytics.query("project_usage_by_property", {**params, "property": by})
        label, keys = str(by), frame["value"] if not frame.empty else pd.Series(dtype=str)
    if frame.empty:
        st.caption("No requests in this range.")
        return
    table = pd.DataFrame(
        {
            label: keys.map(lambda k: k or NONE_SHOWN),
            "requests": frame["requests"].map(fmt.count),
            "errors": [fmt.percent(e, n)
                       for e, n in zip(frame["errors"], frame["requests"], strict=True)],
            "spend": frame["cost_usd"].map(fmt.money),
            "saved": frame["cost_saved_usd"].map(fmt.money),
            "p50 latency": frame["latency_p50_ms"].map(fmt.duration_ms),
            "p95 latency": frame["latency_p95_ms"].map(fmt.duration_ms),
        }
    )  # fmt: skip
    st.dataframe(table, hide_index=True)
    missing = "named no end user" if by == END_USER else "carried no such property"
    st.caption(
        f"Most spend first, at most 100 rows; {NONE_SHOWN} gathers the requests that"
        f" {missing}. Errors: requests that did not succeed, 429s included. Callers set"
        " these with the x-watchllm-user and x-watchllm-property-<name> headers (README)."
    )
