"""Requests: the request log, filtered (several statuses, cache outcomes, stream or not,
endpoints at once; a model, a key, an id's start, an end user, a property and its
value), paged, exported (CSV, JSONL), with
the detail of one request and its conversation (``views.conversation``: admins and
analysts). Every filter is part of the page's link (``views.link``) and
is pushed down into the analytics query (``contracts.request_log_queries``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pandas as pd
import streamlit as st

from watchllm_dashboard import export_link
from watchllm_dashboard import format as fmt
from watchllm_dashboard.data import export, usage
from watchllm_dashboard.views import attribution, auth, conversation, link, ui
from watchllm_dashboard.views.context import PageContext
from watchllm_shared.accounts.sessions import token_hash_of

PAGE_SIZE = 50
ANY = "Any"
CACHE = {"exact": "exact hit", "semantic": "semantic hit", "miss": "miss", "bypass": "bypass"}
STREAM = {"yes": True, "no": False}
ENDPOINTS = ("/v1/chat/completions", "/v1/messages", "/v1/embeddings")
ID_SEARCH = 200  # characters of an id's start


def _statuses(ctx: PageContext, project_id: UUID) -> list[str]:
    """ok, the classes, then each HTTP status a failure had in the window."""
    failed = usage.errors(ctx.analytics, project_id, ctx.window)
    codes = sorted({str(int(code)) for code in failed["http_status"]})
    return ["ok", "4xx", "5xx", *codes]


def _linked(name: str, key: str, choices: list[str]) -> list[str]:
    """``choices``, plus what is chosen already or by the link though the window shows
    none of it (a shared link's status code, an endpoint): a filter may match nothing.
    The link's values for ``name`` set the widget; those it cannot accept are refused."""
    values = link.take(name)
    if values:
        accepted = [v for v in values if v in choices or _acceptable(name, v)]
        for value in values:
            if value not in accepted:
                link.refuse(name, value, "not one of the choices")
        st.session_state[key] = list(dict.fromkeys(accepted))
    chosen = [str(v) for v in st.session_state.get(key, [])]
    return [*choices, *(v for v in chosen if v not in choices)]


def _acceptable(name: str, value: str) -> bool:
    if name == "status":
        return value.isdigit() and len(value) == 3 and value[0] in "12345"
    if name == "endpoint":
        return value.startswith("/v1/") and len(value) <= 200
    return False


def _filters(ctx: PageContext, project_id: UUID) -> dict[str, Any]:
    assert ctx.project is not None
    models = [str(m) for m in usage.by_model(ctx.analytics, project_id, ctx.window)["model"]]
    keys = {
        f"{k.name or 'unnamed'} ({k.display_prefix}…)": k.id
        for k in ctx.actions.keys(ctx.project.name)
    }
    statuses = _linked("status", "requests_status", _statuses(ctx, project_id))
    _linked("cache", "requests_cache", list(CACHE))
    _linked("stream", "requests_stream", list(STREAM))
    endpoints = _linked("endpoint", "requests_endpoint", list(ENDPOINTS))
    linked_model = link.take_one("model")
    if linked_model is not None and len(linked_model) <= 200:
        models += [] if linked_model in models else [linked_model]
        st.session_state["requests_model"] = linked_model
    elif linked_model is not None:
        link.refuse("model", linked_model, "longer than 200 characters")
    link.choose("key", "requests_key", {str(i): label for label, i in keys.items()})
    search = link.take_one("q")
    if search is not None:
        st.session_state["requests_search"] = search[:ID_SEARCH]
    first = st.columns([2, 2, 1, 2])
    chosen = {
        "status": first[0].multiselect("Status", statuses, key="requests_status",
                                       placeholder="Any status"),
        "cache": first[1].multiselect("Cache", list(CACHE), format_func=CACHE.__getitem__,
                                      key="requests_cache", placeholder="Any outcome"),
        "stream": first[2].multiselect("Stream", list(STREAM), key="requests_stream",
                                       placeholder="Either"),
        "endpoint": first[3].multiselect("Endpoint", endpoints, key="requests_endpoint",
                                         placeholder="Any endpoint"),
    }  # fmt: skip
    second = st.columns([1, 1, 2])
    model = second[0].selectbox("Model", [ANY, *models], key="requests_model")
    key = second[1].selectbox("API key", [ANY, *keys], key="requests_key")
    search = (
        second[2]
        .text_input(
            "Request, trace or event id, or its start",
            key="requests_search",
            help="Matches the ids that begin with what you type, as typed (no wildcards).",
        )
        .strip()[:ID_SEARCH]
    )
    for name, values in chosen.items():
        link.keep(name, [str(v) for v in values])
    link.keep("model", "" if model == ANY else str(model))
    link.keep("key", "" if key == ANY else str(keys[str(key)]))
    link.keep("q", search)
    attributed = attribution.request_filters(ctx, project_id)
    return {
        "project_id": project_id,
        **ctx.window.params(),
        "statuses": list(chosen["status"]),
        "caches": list(chosen["cache"]),
        "streams": [STREAM[v] for v in chosen["stream"]],
        "endpoints": list(chosen["endpoint"]),
        "model": "" if model == ANY else model,
        "key_id": None if key == ANY else keys[str(key)],
        "search": search,
        **attributed,
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
        "end user": row["end_user"] or "—",
        "properties": _properties(row["properties"]),
    }
    # st.table renders Markdown in every cell.
    st.table(pd.DataFrame({"value": [ui.plain(v) for v in fields.values()]}, index=list(fields)))


def _properties(properties: Any) -> str:
    """``name=value`` pairs, by name; a caller's text (``ui.plain`` draws it as text)."""
    pairs = sorted(dict(properties or {}).items())
    return ", ".join(f"{name}={value}" for name, value in pairs) or "—"


def _linked_page_number() -> None:
    wanted = link.take_one("p")
    if wanted is None:
        return
    if wanted.isdigit() and 1 <= int(wanted) <= 1_000_000:
        st.session_state["requests_page"] = int(wanted)
    else:
        link.refuse("p", wanted, "not a page number")


def _export(ctx: PageContext, filters: dict[str, Any], matching: int) -> None:
    """Two links to the export route (``export_route``): the browser downloads every
    matching row, streamed, under a link signed for this session and these filters."""
    assert ctx.project is not None
    token = st.session_state.get(auth.TOKEN)
    if not token:
        return
    stem = f"requests-{link.slug(ctx.project.name)}-{link.moment(ctx.window.end)}"
    expires = ctx.runtime.clock() + export_link.LIFETIME
    cells = st.columns([1, 1, 4])
    for cell, kind in zip(cells, export.KINDS, strict=False):
        grant = export_link.Grant(kind, stem, dict(filters), token_hash_of(token), expires)
        cell.link_button(
            f"Export {kind.upper()}",
            export_link.url(export_link.sign(grant, ctx.runtime.export_secret)),
            key=f"requests_export_{kind}",
        )
    cells[2].caption(
        f"An export holds all {fmt.count(matching)} matching requests, newest first,"
        " downloaded as it is read."
    )


def render(ctx: PageContext) -> None:
    st.header("Requests")
    project = ctx.require_project()
    if project is None:
        return
    filters = _filters(ctx, project.id)
    conversation.search(ctx, project)
    _linked_page_number()
    page_number = int(st.number_input("Page", min_value=1, value=1, step=1, key="requests_page"))
    page = usage.request_page(ctx.analytics, filters, page_number, PAGE_SIZE)
    link.keep("p", "" if page.page == 1 else str(page.page))
    st.caption(
        f"{fmt.count(page.total)} requests match · page {page.page} of {page.pages} · "
        f"{ctx.window.describe()}, newest first"
    )
    if page.rows.empty:
        st.info("No request matches these filters in this time range.")
        return
    _export(ctx, filters, page.total)
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
    row = page.rows.iloc[int(choice or 0)]
    _detail(row, key_names)
    conversation.render(ctx, project, str(row["request_id"]))
