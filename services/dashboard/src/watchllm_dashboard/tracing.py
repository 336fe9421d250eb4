"""Tracing in the dashboard: on only when the OTLP endpoint is set, like every service
(``watchllm_shared.telemetry``).

- :func:`install` runs once per process, from the app's shared runtime: the tracer
  provider (service ``watchllm-dashboard``) and the official asyncpg, redis-py and HTTPX
  instrumentations. Off, it installs nothing and ``Runtime.tracer`` is None, so no
  span code below runs.
- :func:`page_span`: one page view is one trace, a SERVER span ``dashboard <page>``
  around the session check, the sidebar and the page, with ``watchllm.page`` and
  ``watchllm.project_id`` (:func:`describe`). A view that fails (a store down, analytics
  unavailable, a refused change) gets an error status (:func:`failed`); the page shows
  the error as before. Streamlit's rerun and stop are BaseExceptions, not failures.
- The Postgres and Redis calls run on the runtime's event loop thread, yet are the page
  span's children: ``Runtime.run`` hands coroutines over with
  ``asyncio.run_coroutine_threadsafe``, whose task runs in a copy of the caller's
  ``contextvars`` context, where OpenTelemetry keeps the current span. (Handed over
  without it, they would be root CLIENT spans, which the sampler drops as background
  calls; ``tests/dashboard/test_tracing.py`` checks they are children.)
- Each analytics query that runs (not one answered from the dashboard's cache) is a span
  ``analytics <query>`` (:class:`TracedReader`), whichever path it takes. Through the
  analytics service it goes by HTTPX, whose instrumentation sends ``traceparent``: the
  service's spans join the page's trace. Directly to ClickHouse
  (``WATCHLLM_DASHBOARD_CLICKHOUSE_URL``), that span is the whole story. Health probes
  are HTTPX spans too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pandas as pd
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer

from watchllm_dashboard.data.analytics import AnalyticsReader
from watchllm_shared.accounts import Project
from watchllm_shared.settings import WatchLLMSettings
from watchllm_shared.telemetry import configure_tracing

TRACER_NAME = "watchllm_dashboard"

_install_lock = threading.Lock()
_installed = False


def install(settings: WatchLLMSettings) -> None:
    """Tracing for this process, once (Streamlit may open the runtime again); nothing
    when tracing is off."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        if configure_tracing("dashboard", settings) is None:
            return
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
        RedisInstrumentor().instrument()
        HTTPXClientInstrumentor().instrument()


@contextmanager
def page_span(tracer: Tracer | None) -> Iterator[Span]:
    """The page view's span, current while the view runs; a no-op span when off."""
    if tracer is None:
        yield INVALID_SPAN
        return
    with tracer.start_as_current_span(
        "dashboard",
        kind=SpanKind.SERVER,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            failed(span, exc)
            raise


def describe(span: Span, page: str, project: Project | None = None) -> None:
    if not span.is_recording():
        return
    span.update_name(f"dashboard {page}")
    span.set_attribute("watchllm.page", page)
    if project is not None:
        span.set_attribute("watchllm.project_id", str(project.id))


def failed(span: Span, exc: Exception) -> None:
    if not span.is_recording():
        return
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class TracedReader:
    """The process's analytics reader, each query in a span of its own."""

    def __init__(self, reader: AnalyticsReader, tracer: Tracer) -> None:
        self._reader = reader
        self._tracer = tracer

    def query(self, name: str, parameters: Mapping[str, Any]) -> pd.DataFrame:
        with self._tracer.start_as_current_span(
            f"analytics {name}", attributes={"watchllm.analytics.query": name}
        ):
            return self._reader.query(name, parameters)

    def close(self) -> None:
        self._reader.close()
