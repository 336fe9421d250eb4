"""Tracing in the dashboard: with OTEL_EXPORTER_OTLP_ENDPOINT set, each page view is one
trace of service ``watchllm-dashboard``, rooted in a span named after the page, with the
view's Postgres and Redis calls and its analytics queries (down to the analytics
service's own spans) as children; a view that fails still shows its error and marks its
span.
Off, nothing is instrumented or exported and the pages are the same.

Tracing is installed once per process and for good, so the app runs in processes of its
own: ``python -m tests.dashboard.test_tracing`` renders pages through Streamlit's AppTest
(the real app script, as the other dashboard tests run it) against the running system,
and exits, which flushes its spans to a real OTLP/HTTP receiver on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor

from tests.dashboard.conftest import START_S, Accounts, Stack, app, shown
from tests.support.otlp import Collector, ReceivedSpan, collector_running
from tests.support.processes import ServiceProcess, free_port, start_service
from watchllm_shared.telemetry import active_tracer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
DASHBOARD = "watchllm-dashboard"
INSTRUMENTORS = {
    "asyncpg": AsyncPGInstrumentor,
    "httpx": HTTPXClientInstrumentor,
    "redis": RedisInstrumentor,
}


@dataclass
class Rendered:
    """What one dashboard process showed, and what it had installed."""

    views: list[dict[str, Any]]  # per page: page, headers, errors, warnings, exceptions, text
    traced: bool
    instrumented: list[str]


def render_pages(out: Path, token: str, project: str, pages: list[str]) -> None:
    """The dashboard process's part: sign in with ``token``, pick ``project``, open each
    page in turn in the sidebar, write what was shown to ``out``."""
    at = app(token, page=pages[0], project=project).run()
    views = []
    for index, page in enumerate(pages):
        if index:
            at.radio(key="page").set_value(page).run()
        views.append(
            {
                "page": page,
                "headers": [h.value for h in at.header],
                "errors": [e.value for e in at.error],
                "warnings": [w.value for w in at.warning],
                "exceptions": [e.value for e in at.exception],
                "text": shown(at),
            }
        )
    report = Rendered(
        views,
        traced=active_tracer("probe") is not None,
        instrumented=[n for n, i in INSTRUMENTORS.items() if i().is_instrumented_by_opentelemetry],
    )
    st.cache_resource.clear()  # closes the runtime (pool, Redis) before the process ends
    out.write_text(json.dumps(report.__dict__))


def render_in_a_process(env: dict[str, str], token: str, project: str, *pages: str) -> Rendered:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rendered.json"
        done = subprocess.run(
            [sys.executable, "-m", "tests.dashboard.test_tracing", str(out), token, project,
             *pages],
            env={**inherited, **env}, cwd=ROOT, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        return Rendered(**json.loads(out.read_text()))


def tracing_to(collector: Collector) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}


def db_system(span: ReceivedSpan) -> Any:
    return span.attributes.get("db.system.name", span.attributes.get("db.system"))


def page_roots(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans if s.service == DASHBOARD and not s.parent_span_id}


def descends_from(span: ReceivedSpan, root: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> bool:
    while span.parent_span_id and span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
    return span == root


def assert_clean(view: dict[str, Any]) -> None:
    assert view["headers"] == [view["page"]], view
    assert not (view["errors"] or view["warnings"] or view["exceptions"]), view


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    yield from collector_running()


@pytest.fixture
def fresh_collector() -> Iterator[Collector]:
    yield from collector_running()


@pytest.fixture(scope="module")
def traced_analytics(
    collector: Collector, stack: Stack, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """An analytics service of its own (empty store, stream of its own), exporting to the
    collector: the dashboard's reads must reach it inside the page's trace."""
    env = {
        **stack.env,
        **tracing_to(collector),
        "WATCHLLM_EVENTS_STREAM": f"test.dashboard-tracing.{uuid.uuid4().hex[:10]}",
        "WATCHLLM_DATA_DIR": str(tmp_path_factory.mktemp("traced-analytics")),
        "WATCHLLM_ANALYTICS_CONSUMER_NAME": "dashboard-tracing",
    }
    process = start_service("analytics", env, log_dir, "/readyz", START_S)
    yield process
    process.stop()


def test_each_page_view_is_one_trace_with_its_store_and_analytics_calls(
    collector: Collector,
    traced_analytics: ServiceProcess,
    dashboard_env: dict[str, str],
    tokens: dict[str, str],
    accounts: Accounts,
) -> None:
    env = {**dashboard_env, **tracing_to(collector), "WATCHLLM_ANALYTICS_URL": traced_analytics.url}
    pages = ("Rate limits", "Overview")
    rendered = render_in_a_process(env, tokens["admin"], accounts.project, *pages)
    for view in rendered.views:
        assert_clean(view)
    assert rendered.traced and rendered.instrumented == ["asyncpg", "httpx", "redis"]

    def both_traces_complete(spans: list[ReceivedSpan]) -> bool:
        roots = page_roots(spans).values()
        served = {s.trace_id for s in spans if s.service == "watchllm-analytics"}
        return len(roots) >= 2 and all(r.trace_id in served for r in roots)

    spans = collector.wait_for(both_traces_complete, timeout=20)
    roots = page_roots(spans)
    # Nothing else starts a trace: opening the pool, the session check, the sidebar all
    # happen inside a view or are dropped as background calls.
    assert set(roots) == {"dashboard Rate limits", "dashboard Overview"}
    assert roots["dashboard Rate limits"].trace_id != roots["dashboard Overview"].trace_id
    traced_ids = {r.trace_id for r in roots.values()}
    assert {s.trace_id for s in spans if s.service == DASHBOARD} == traced_ids

    root = roots["dashboard Rate limits"]
    assert root.kind == "SERVER" and not root.error
    assert root.attributes == {
        "watchllm.page": "Rate limits",
        "watchllm.project_id": str(accounts.project_id),
    }
    mine = [s for s in spans if s.trace_id == root.trace_id]
    by_id = {s.span_id: s for s in mine}
    assert all(descends_from(s, root, by_id) for s in mine), "a span outside the page's tree"
    calls = [s for s in mine if s.service == DASHBOARD and s is not root]
    # The session check, keys and limits (Postgres) and the usage now (Redis) ran on the
    # runtime's loop thread, and still are the page's children.
    stores = [s for s in calls if db_system(s) is not None]
    assert {db_system(s) for s in stores} == {"postgresql", "redis"}
    assert all(s.kind == "CLIENT" and s.parent_span_id == root.span_id for s in stores)
    queries = {s.span_id: s for s in calls if s.name.startswith("analytics ")}
    assert {s.name for s in queries.values()} == {
        "analytics project_outcomes_by_hour",
        "analytics project_key_activity",
    }
    assert all(
        q.kind == "INTERNAL" and q.parent_span_id == root.span_id and not q.error
        for q in queries.values()
    )
    posts = {s.span_id: s for s in calls if s.name == "POST"}
    assert sorted(p.parent_span_id for p in posts.values()) == sorted(queries)
    assert len(calls) == len(stores) + len(queries) + len(posts)
    # Each query continued in the analytics service, under its HTTP call.
    served = [s for s in mine if s.service == "watchllm-analytics" and s.kind == "SERVER"]
    assert sorted(s.parent_span_id for s in served) == sorted(posts)
    assert {s.name for s in served} == {"POST /v1/queries/{name}"}
    overview = roots["dashboard Overview"]
    assert overview.attributes["watchllm.page"] == "Overview"


def test_a_view_that_fails_still_shows_its_error_and_marks_its_span(
    fresh_collector: Collector,
    dashboard_env: dict[str, str],
    tokens: dict[str, str],
    accounts: Accounts,
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # the analytics service is down
    env = {**dashboard_env, **tracing_to(fresh_collector), "WATCHLLM_ANALYTICS_URL": nobody}
    (view,) = render_in_a_process(env, tokens["viewer"], accounts.project, "Rate limits").views
    assert view["headers"] == ["Rate limits"] and not view["exceptions"] and not view["errors"]
    assert [w[:35] for w in view["warnings"]] == ["Analytics cannot answer right now: "]

    spans = fresh_collector.wait_for(lambda s: "dashboard Rate limits" in page_roots(s))
    root = page_roots(spans)["dashboard Rate limits"]
    assert root.error and root.attributes["error.type"] == "AnalyticsUnavailable"
    (query,) = [s for s in spans if s.name.startswith("analytics ")]
    (post,) = [s for s in spans if s.name == "POST"]
    assert query.error and query.parent_span_id == root.span_id
    assert post.error and post.parent_span_id == query.span_id
    assert any(db_system(s) == "redis" and s.trace_id == root.trace_id for s in spans)


@pytest.mark.parametrize(
    "off",
    [{}, {"OTEL_SDK_DISABLED": "true"}],
    ids=["no-endpoint", "sdk-disabled-with-endpoint"],
)
def test_with_tracing_off_nothing_is_instrumented_or_exported(
    off: dict[str, str],
    fresh_collector: Collector,
    dashboard_env: dict[str, str],
    tokens: dict[str, str],
    accounts: Accounts,
) -> None:
    if off:
        off = {**off, **tracing_to(fresh_collector)}
    rendered = render_in_a_process(
        {**dashboard_env, **off}, tokens["admin"], accounts.project, "Rate limits", "Overview"
    )
    for view in rendered.views:
        assert_clean(view)
        assert f"Signed in as **{accounts.admin}** (admin)" in view["text"]
    assert not rendered.traced and rendered.instrumented == []
    assert fresh_collector.spans == []  # the process has exited: anything would be here


if __name__ == "__main__":
    render_pages(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:])
