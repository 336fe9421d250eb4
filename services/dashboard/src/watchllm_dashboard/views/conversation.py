"""Logged bodies on Requests (issue 17), for admins and analysts: the conversation of one
request under its detail (the system prompt, the messages and the answer,
``data.bodies``), and a search of the project's requests by the text of their bodies. A
viewer is told who may see the conversation, gets no search, and nothing is read.

The search text is not written to the page's link (``views.link``), unlike the other
filters: it is typed to find what bodies hold, and a link travels (history, chat, logs).
A search is audited like a view; a rerun in the same minute with the same text reuses
what it found.

Each read goes through ``Actions.request_bodies``, which audits it. A rerun of the page
that still shows the same request (any widget change reruns the script) shows what this
browser session read, without reading or auditing again; choosing another request, or
coming back to this one after another, is a new view, read and audited.

Every text of a body is the tenant's: message texts, tool arguments and results go in
code blocks (text, never Markdown); roles, tool names and ids through ``ui.plain``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data.bodies import (
    SEARCH_LIMIT,
    SEARCH_TEXT_CHARS,
    Conversation,
    LoggedBodies,
    Message,
    Part,
    conversation,
)
from watchllm_dashboard.views import ui
from watchllm_dashboard.views.context import PageContext
from watchllm_shared.accounts import Project

HIDDEN = "Request and answer bodies are visible to admins and analysts."
NONE_LOGGED = (
    "No body logged for this request: the project's body logging was off (`watchllm"
    " projects logging NAME --bodies on`), the bodies have expired, or they are not stored"
    " yet."
)
_SHOWN = "requests_bodies_shown"  # (project id, request id, bodies) last read here
_SEARCHED = "requests_bodies_searched"  # (project id, text, window described, matches)


def search(ctx: PageContext, project: Project) -> None:
    """The project's requests whose logged request or answer contains a text."""
    if not ctx.actions.user.reads_bodies:
        return
    text = st.text_input(
        "Text in the logged request or answer",
        key="requests_body_text",
        help="Case-insensitive, as typed (no wildcards); only requests whose project logs"
        " bodies. Each search is written to the audit log.",
    ).strip()[:SEARCH_TEXT_CHARS]
    if not text:
        return
    key = (project.id, text, ctx.window.describe())
    searched = st.session_state.get(_SEARCHED)
    if searched is not None and searched[:3] == key:
        found: pd.DataFrame = searched[3]
    else:
        found = ctx.actions.search_bodies(project, ctx.window, text)
        st.session_state[_SEARCHED] = (*key, found)
    most = f" (the newest {SEARCH_LIMIT})" if len(found) >= SEARCH_LIMIT else ""
    st.caption(
        f"{fmt.count(len(found))} requests{most} whose request or answer contains"
        f" “{ui.plain(text)}” · {ctx.window.describe()}, newest first"
    )
    if found.empty:
        return
    st.dataframe(
        pd.DataFrame({
            "time (UTC)": found["occurred_at"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "request id": found["request_id"],
            "model": found["model"],
            "status": found["status"],
            "request": found["request_excerpt"],
            "answer": found["response_excerpt"],
        }),
        hide_index=True,
        key="requests_body_matches",
    )  # fmt: skip


def render(ctx: PageContext, project: Project, request_id: str) -> None:
    st.markdown("#### Conversation")
    if not ctx.actions.user.reads_bodies:
        st.caption(HIDDEN)
        return
    bodies = _read(ctx, project, request_id)
    if bodies is None:
        st.caption(NONE_LOGGED)
        return
    st.caption(
        f"As logged (redacted by the gateway) · kept until {fmt.moment(bodies.expires_at)}"
        " · this view is in the audit log"
    )
    _show(conversation(bodies))


def _read(ctx: PageContext, project: Project, request_id: str) -> LoggedBodies | None:
    shown = st.session_state.get(_SHOWN)
    if shown is not None and shown[:2] == (project.id, request_id):
        bodies: LoggedBodies = shown[2]
        return bodies
    found = ctx.actions.request_bodies(project, request_id)
    st.session_state[_SHOWN] = None if found is None else (project.id, request_id, found)
    return found


def _show(talk: Conversation) -> None:
    for name, value in talk.extras.items():
        st.caption(f"{name}: {ui.plain(value)}")
    if talk.system:
        st.markdown("**system**")
        _parts(talk.system)
    for message in talk.messages:
        _message(message)
    if talk.raw_request is not None:
        st.caption("The request, as stored (not a chat request WatchLLM can lay out):")
        st.code(talk.raw_request, language=None, wrap_lines=True)
    st.markdown("##### Answer")
    for message in talk.answer:
        _message(message)
    if talk.raw_answer is not None:
        st.caption(
            "The answer, as stored (not JSON: a stream that could not be assembled, or a"
            " body cut at the size cap):"
        )
        st.code(talk.raw_answer, language=None, wrap_lines=True)
    elif not talk.answer:
        st.caption("No answer was logged (the request was refused or its answer was empty).")


def _message(message: Message) -> None:
    st.markdown(f"**{ui.plain(message.role)}**")
    _parts(message.parts)


def _parts(parts: tuple[Part, ...]) -> None:
    for part in parts:
        if part.kind == "tool_call":
            st.caption(f"Tool call: {ui.plain(part.label)}")
            st.code(part.text, language="json", wrap_lines=True)
        elif part.kind == "tool_result":
            st.caption(f"Tool result for {ui.plain(part.label or 'a call')}")
            st.code(part.text, language=None, wrap_lines=True)
        else:
            st.code(part.text, language=None, wrap_lines=True)
