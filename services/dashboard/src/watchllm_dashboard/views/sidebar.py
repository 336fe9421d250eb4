"""The sidebar: who is signed in, the page, and the filters every page shares."""

from __future__ import annotations

import streamlit as st

from watchllm_dashboard.data.window import DEFAULT_RANGE, RANGES, TimeWindow
from watchllm_dashboard.runtime import Runtime
from watchllm_dashboard.views import auth, ui
from watchllm_shared.accounts import Project, User

PAGES = (
    "Overview",
    "Requests",
    "Cache",
    "Rate limits",
    "API keys",
    "Projects & settings",
    "Health",
)


def render(
    runtime: Runtime, user: User, projects: list[Project]
) -> tuple[str, Project | None, TimeWindow]:
    with st.sidebar:
        st.markdown("### WatchLLM")
        page = st.radio("Page", PAGES, key="page", label_visibility="collapsed")
        st.divider()
        project = None
        if projects:
            names = [p.name for p in projects]
            if st.session_state.get("project") not in names:
                st.session_state["project"] = names[0]
            name = st.selectbox("Project", names, key="project")
            project = next(p for p in projects if p.name == name)
        label = st.selectbox(
            "Time range", list(RANGES), key="range", index=list(RANGES).index(DEFAULT_RANGE)
        )
        window = TimeWindow.last(str(label), runtime.clock())
        st.caption(window.describe())
        st.divider()
        st.caption(f"Signed in as **{ui.plain(user.username)}** ({user.role.value})")
        if st.button("Sign out", key="sign_out"):
            auth.sign_out(runtime)
            st.rerun()
    return str(page), project, window
