"""The sidebar: who is signed in, the page, and the filters every page shares: the
project and the time range (a preset, or a custom range typed in UTC). Each is part of
the page's link (``views.link``)."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from watchllm_dashboard.data.window import (
    CUSTOM,
    DEFAULT_RANGE,
    EXAMPLE,
    RANGES,
    RangeRefused,
    TimeWindow,
    moment_text,
)
from watchllm_dashboard.runtime import Runtime
from watchllm_dashboard.views import auth, link, ui
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
CHOICES = (*RANGES, CUSTOM)
FROM, TO = "range_from", "range_to"


def _linked_page() -> None:
    wanted = link.take_one("page")
    pages = {link.slug(page): page for page in PAGES}
    if wanted in pages:
        st.session_state["page"] = pages[wanted]
    elif wanted is not None:
        link.refuse("page", wanted, "no such page")


def _linked_project(names: list[str]) -> None:
    wanted = link.take_one("project")
    if wanted in names:
        st.session_state["project"] = wanted
    elif wanted is not None:
        link.refuse("project", wanted, "no such project")


def _linked_range(now: datetime) -> None:
    wanted, start, end = link.take_one("range"), link.take_one("from"), link.take_one("to")
    presets = {link.slug(label): label for label in RANGES}
    if wanted in presets:
        st.session_state["range"] = presets[wanted]
        return
    if wanted not in (None, link.slug(CUSTOM)):
        link.refuse("range", str(wanted), f"not one of {', '.join(presets)} or custom")
        return
    if start is None and end is None:
        if wanted is not None:
            link.refuse("range", str(wanted), "a custom range needs from and to")
        return
    try:
        window = TimeWindow.custom(start or "", end or "", now)
    except RangeRefused as exc:
        link.refuse("from, to", f"{start or ''} → {end or ''}", str(exc))
        return
    st.session_state.update(
        {"range": CUSTOM, FROM: moment_text(window.start), TO: moment_text(window.end)}
    )


def _window(now: datetime) -> TimeWindow:
    label = st.selectbox("Time range", CHOICES, key="range", index=CHOICES.index(DEFAULT_RANGE))
    if label != CUSTOM:
        link.keep("range", link.slug(str(label)))
        return TimeWindow.last(str(label), now)
    if FROM not in st.session_state or TO not in st.session_state:  # start from the default
        default = TimeWindow.last(DEFAULT_RANGE, now)
        st.session_state[FROM] = moment_text(default.start)
        st.session_state[TO] = moment_text(default.end)
    hint = f"UTC, like {EXAMPLE} (a date alone is its midnight)"
    start = st.text_input("From (UTC)", key=FROM, help=hint)
    end = st.text_input("To (UTC)", key=TO, help=hint)
    try:
        window = TimeWindow.custom(start, end, now)
    except RangeRefused as exc:
        st.error(f"{ui.plain(exc)}. Showing {DEFAULT_RANGE} until the range is valid.")
        return TimeWindow.last(DEFAULT_RANGE, now)
    link.keep("range", link.slug(CUSTOM))
    link.keep("from", link.moment(window.start))
    link.keep("to", link.moment(window.end))
    return window


def render(
    runtime: Runtime, user: User, projects: list[Project]
) -> tuple[str, Project | None, TimeWindow]:
    now = runtime.clock()
    names = [p.name for p in projects]
    _linked_page()
    _linked_project(names)
    _linked_range(now)
    with st.sidebar:
        st.markdown("### WatchLLM")
        page = st.radio("Page", PAGES, key="page", label_visibility="collapsed")
        link.keep("page", link.slug(str(page)))
        st.divider()
        project = None
        if projects:
            if st.session_state.get("project") not in names:
                st.session_state["project"] = names[0]
            name = st.selectbox("Project", names, key="project")
            link.keep("project", str(name))
            project = next(p for p in projects if p.name == name)
        window = _window(now)
        st.caption(window.describe())
        st.divider()
        st.caption(f"Signed in as **{ui.plain(user.username)}** ({user.role.value})")
        if st.button("Sign out", key="sign_out"):
            auth.sign_out(runtime)
            st.rerun()
    return str(page), project, window
