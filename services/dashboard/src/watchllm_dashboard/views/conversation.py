"""The conversation of one request, under its detail on Requests (issue 17): the system
prompt, the messages and the answer (``data.bodies``), for admins and analysts; a viewer
is told who may see them, and nothing is read.

Each read goes through ``Actions.request_bodies``, which audits it. A rerun of the page
that still shows the same request (any widget change reruns the script) shows what this
browser session read, without reading or auditing again; choosing another request, or
coming back to this one after another, is a new view, read and audited.

Every text of a body is the tenant's: message texts, tool arguments and results go in
code blocks (text, never Markdown); roles, tool names and ids through ``ui.plain``.
"""

from __future__ import annotations

import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data.bodies import Conversation, LoggedBodies, Message, Part, conversation
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
