"""The app, run by Streamlit on every page view (``app.py`` calls :func:`run`).

Order: page config → the process's runtime (opened once, with tracing installed first
when it is on) → the signed-in user (the session is checked in Postgres on every view)
→ sidebar → the chosen page. The view's link (``views.link``) is read from the query
string at the first signed-in view and written back after each. A store that fails
mid-page shows an error on that page instead of a traceback. With tracing on, everything
after the runtime is one trace per view, named after the page (``tracing.page_span``); a
view that fails marks it an error.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import streamlit as st
from opentelemetry.trace import Span
from redis.exceptions import RedisError

from watchllm_dashboard.actions import Actions
from watchllm_dashboard.data.analytics import AnalyticsUnavailable
from watchllm_dashboard.runtime import DashboardUnavailable, Runtime
from watchllm_dashboard.settings import DashboardSettings
from watchllm_dashboard.tracing import describe, failed, install, page_span
from watchllm_dashboard.views import (
    auth,
    cache,
    health,
    keys,
    link,
    overview,
    projects,
    rate_limits,
    requests,
    sidebar,
)
from watchllm_dashboard.views.context import CachedReader, PageContext
from watchllm_dashboard.views.ui import plain
from watchllm_shared.accounts import AccountError

RENDER: dict[str, Callable[[PageContext], None]] = {
    "Overview": overview.render,
    "Requests": requests.render,
    "Cache": cache.render,
    "Rate limits": rate_limits.render,
    "API keys": keys.render,
    "Projects & settings": projects.render,
    "Health": health.render,
}
STORE_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    RedisError,
    DashboardUnavailable,
)


def _close(runtime: Runtime) -> None:
    runtime.close()


@st.cache_resource(show_spinner="Connecting…", on_release=_close)
def shared_runtime() -> Runtime:
    """One runtime per process, from the environment, read once."""
    settings = DashboardSettings()
    install(settings)  # tracing, once per process; nothing when it is off
    return Runtime.open(settings)


def run() -> None:
    st.set_page_config(page_title="WatchLLM", page_icon="📈", layout="wide")
    try:
        runtime = shared_runtime()
    except STORE_ERRORS as exc:
        st.error(f"The dashboard cannot reach Postgres or Redis: {plain(exc)}")
        return
    try:
        with page_span(runtime.tracer) as span:
            _view(runtime, span)
    except AnalyticsUnavailable as exc:
        st.warning(f"Analytics cannot answer right now: {plain(exc)}")
    except STORE_ERRORS as exc:
        st.error(f"A store did not answer: {type(exc).__name__}: {plain(exc)}")


def _view(runtime: Runtime, span: Span) -> None:
    user = auth.current_user(runtime)
    if user is None:
        describe(span, "Sign in")
        auth.render_sign_in(runtime)
        return
    actions = Actions(runtime, user)
    link.start()
    notice = st.empty()  # where the link's unusable settings are named, above the page
    try:
        page, project, window = sidebar.render(runtime, user, actions.projects())
        describe(span, page, project)
        reader = CachedReader(runtime.analytics, runtime.settings.dashboard_cache_seconds > 0)
        context = PageContext(runtime, actions, reader, project, window)
        try:
            RENDER[page](context)
        except AccountError as exc:  # e.g. a project deleted meanwhile
            failed(span, exc)
            st.error(plain(exc))
    finally:
        link.finish(notice)
