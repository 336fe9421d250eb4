"""Tenant strings are shown as text, never rendered as Markdown (issue 22, finding 8): a
model name ``![t](http://host/x)`` made every viewer's browser fetch that URL, key names
too (Rate limits, Projects), and ``[click](http://evil)`` showed a link.

Streamlit renders Markdown in captions, alerts, headers, metric labels and values,
widget labels, progress texts and ``st.table`` cells; the app hands every such element
tenant text escaped (``views.ui.plain``). Here a project's key is named, and its requests
name a model, request, trace, provider, endpoint and error, with an image and a link; on
every page no element the browser renders as Markdown holds them unescaped, and the
escaped text is there (shown, not dropped). ``test_browser`` shows the same in Chromium
with a loopback receiver that records no fetch."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from tests.analytics.conftest import make_event
from tests.dashboard.conftest import Stack, Tenant, app, new_tenant, publish, wait_stored
from watchllm_dashboard.views.sidebar import PAGES
from watchllm_dashboard.views.ui import plain
from watchllm_shared.accounts import AccountStore
from watchllm_shared.accounts.limits import KEEP, LimitStore
from watchllm_shared.contracts import RequestStatus

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_env")]

# What a rendered image or link needs; none may reach a Markdown element unescaped.
MARKUP = ("![", "](", "[click")
# GFM links a bare address found in the text once its escapes are read (its pattern).
BARE = re.compile(r"(?i)(https?://|www(?=\.))[-.\w]")
ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")  # a backslash-escaped punctuation mark
# Elements whose text (or label) Streamlit renders as Markdown.
TEXTS = ("title", "header", "subheader", "markdown", "caption", "info", "success",
         "warning", "error")  # fmt: skip
LABELLED = ("selectbox", "text_input", "number_input", "checkbox", "toggle", "radio",
            "button", "expander", "metric")  # fmt: skip


def markup(port: int, what: str) -> str:
    return f"![t](http://127.0.0.1:{port}/{what}.png) [click](http://evil.example/{what})"


async def markup_tenant(store: AccountStore, stack: Stack, port: int) -> tuple[Tenant, str]:
    """A project whose second key, with limits of its own, and whose two newest requests
    carry image and link Markdown in every string field; returns it and the key name."""
    tenant = await new_tenant(store, "markup")
    key_name = markup(port, "key")
    created = await store.create_key(tenant.project, key_name)
    await LimitStore(store.pool, actor="tests").set_key_limits(created.key.id, 100, KEEP)
    now = datetime.now(UTC)
    common = {"key_id": created.key.id, "model": markup(port, "model"), "unpriced": True}
    publish(stack, [
        make_event(tenant.project_id, now - timedelta(minutes=3), **common),
        make_event(
            tenant.project_id, now - timedelta(minutes=2), **common,
            status=RequestStatus.UPSTREAM_ERROR, http_status=502,
            error_type=markup(port, "error") + "`", request_id=markup(port, "request"),
            trace_id=markup(port, "trace"), provider=markup(port, "provider"),
            endpoint=markup(port, "endpoint"),
        ),
    ])  # fmt: skip
    wait_stored(stack, tenant.project_id, 2)
    return tenant, key_name


def rendered_as_markdown(at: AppTest) -> Iterator[str]:
    """Every text on the page that the browser renders as Markdown."""
    for kind in TEXTS:
        yield from (str(element.value) for element in at.get(kind))
    for kind in LABELLED:
        yield from (str(element.label) for element in at.get(kind))
    yield from (str(metric.value) for metric in at.get("metric"))
    yield from (progress.proto.text for progress in at.get("progress"))
    for table in at.get("table"):
        frame = table.value
        yield from (str(cell) for cell in [*frame.index, *frame.columns, *frame.to_numpy().flat])


async def test_tenant_markdown_is_shown_as_text_on_every_page(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    port = 9  # never fetched here: AppTest renders nothing (test_browser listens)
    tenant, key_name = await markup_tenant(account_store, stack, port)
    shown: set[str] = set()
    for page in PAGES:
        at = await asyncio.to_thread(app(tokens["admin"], page, tenant.project).run)
        assert not at.exception, (page, [e.value for e in at.exception])
        texts = list(rendered_as_markdown(at))
        unsafe = [t for t in texts if any(sign in ESCAPED.sub("", t) for sign in MARKUP)
                  or BARE.search(ESCAPED.sub(r"\1", t))]  # fmt: skip
        assert not unsafe, (page, unsafe)
        shown.update(
            what
            for what in ("key", "model", "error", "request", "trace", "provider", "endpoint")
            if any(plain(markup(port, what)) in text for text in texts)
        )
        if page in ("Rate limits", "Projects & settings"):  # the key's limits
            assert any(plain(key_name) in text for text in texts), page
    # The escaped text is there (Overview's unpriced warning, the request's detail).
    assert shown == {"key", "model", "error", "request", "trace", "provider", "endpoint"}
