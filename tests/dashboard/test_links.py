"""Issue 20's views: a custom time range, the view in the address bar (a link opens the
same view; a bad one says what it could not use and shows the defaults), the Requests
page's filters of several values at once (its export: ``test_export``). Each test has a
project of its own with events at chosen times on the gateway's stream (the app's clock
pinned)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.analytics.conftest import make_event
from tests.dashboard.conftest import (
    Stack,
    Tenant,
    app,
    assert_clean,
    new_tenant,
    publish,
    shown,
    wait_stored,
)
from watchllm_shared.accounts import AccountStore
from watchllm_shared.contracts import CacheOutcome, RequestStatus

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_env")]

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
FAILED = {429: RequestStatus.RATE_LIMITED, 502: RequestStatus.UPSTREAM_ERROR,
          400: RequestStatus.CLIENT_ERROR}  # fmt: skip


async def run(at: AppTest) -> AppTest:
    at = await asyncio.to_thread(at.run)
    assert not at.exception, [e.value for e in at.exception]
    return at


def linked(token: str, **params: str | list[str]) -> AppTest:
    """The app opened from a link: the query string, then the signed-in session."""
    at = app(token)
    for name, value in params.items():
        at.query_params[name] = value
    return at


def event(tenant: Tenant, at: datetime, http: int = 200, cache: CacheOutcome = CacheOutcome.MISS,
          semantic: bool = False, stream: bool = False,
          endpoint: str = "/v1/chat/completions") -> Any:  # fmt: skip
    status = FAILED.get(http, RequestStatus.OK)
    return make_event(tenant.project_id, at, key_id=tenant.key_id, http_status=http,
                      status=status, cache=cache, cache_similarity=0.97 if semantic else None,
                      stream=stream, endpoint=endpoint, model="gpt-4o-mini",
                      properties={"http": str(http)}, end_user=f"u{http}")  # fmt: skip


@pytest.fixture
async def tenant(stack: Stack, account_store: AccountStore) -> Tenant:
    """Two hours ago, 9 requests of every kind; 26 hours ago, 2 more."""
    tenant = await new_tenant(account_store, "links")
    two = NOW - timedelta(hours=2)
    events = [
        event(tenant, two, 200, CacheOutcome.HIT),  # exact hit
        event(tenant, two, 200, CacheOutcome.HIT, semantic=True),
        event(tenant, two, 200, stream=True),
        event(tenant, two, 200, stream=True, endpoint="/v1/messages"),
        event(tenant, two, 429, CacheOutcome.BYPASS),
        event(tenant, two, 429, CacheOutcome.BYPASS, endpoint="/v1/messages"),
        event(tenant, two, 502),
        event(tenant, two, 502, stream=True),
        event(tenant, two, 400, CacheOutcome.BYPASS, endpoint="/v1/embeddings"),
        event(tenant, NOW - timedelta(hours=26)),
        event(tenant, NOW - timedelta(hours=26), 502),
    ]
    publish(stack, events)
    wait_stored(stack, tenant.project_id, len(events))
    return tenant


def matching(at: AppTest) -> int:
    caption = next(c.value for c in at.caption if "requests match" in c.value)
    return int(caption.split(" requests match")[0].replace(",", ""))


def custom(at: AppTest, start: datetime, end: datetime) -> AppTest:
    at.session_state["range"] = "Custom"
    at.session_state["range_from"] = start.strftime("%Y-%m-%d %H:%M")
    at.session_state["range_to"] = end.strftime("%Y-%m-%d %H:%M")
    return at


async def test_a_custom_range_covers_exactly_its_span_and_refuses_a_bad_one(
    tenant: Tenant, tokens: dict[str, str], clock: Callable[[datetime], None]
) -> None:
    clock(NOW)
    at = app(tokens["viewer"], "Requests", tenant.project)
    at = await run(custom(at, NOW - timedelta(hours=27), NOW - timedelta(hours=25)))
    assert_clean(at)
    assert matching(at) == 2
    assert "Custom: " in shown(at)
    wider = NOW - timedelta(hours=30), NOW - timedelta(minutes=90)
    at = await run(custom(at, *wider))
    assert matching(at) == 11
    refused = [
        (NOW - timedelta(hours=1), NOW - timedelta(hours=2), "must be before To"),
        (NOW - timedelta(days=91), NOW, "at most 90 days"),
        (NOW - timedelta(hours=1), NOW + timedelta(hours=1), "is in the future"),
    ]
    for start, end, why in refused:
        at = await run(custom(at, start, end))
        assert why in at.error[0].value and "Showing Last 24 hours" in at.error[0].value
        assert matching(at) == 9  # the default range, said on the page
        assert "Last 24 hours: " in shown(at)
    at.text_input(key="range_from").input("yesterday").run()
    assert "'yesterday' is not a date and time: write it like 2026-03-01 12:00" in shown(at)


async def test_a_link_opens_the_same_view_and_the_view_writes_its_link(
    tenant: Tenant, tokens: dict[str, str], clock: Callable[[datetime], None]
) -> None:
    clock(NOW)
    at = app(tokens["viewer"], "Requests", tenant.project)
    at = await run(custom(at, NOW - timedelta(hours=3), NOW - timedelta(hours=1)))
    at.multiselect(key="requests_status").set_value(["429", "5xx"])
    at.multiselect(key="requests_cache").set_value(["miss", "bypass"])
    at.multiselect(key="requests_stream").set_value(["no"]).run()
    assert_clean(at)
    assert matching(at) == 3  # two 429s and the 502 that did not stream
    address = dict(at.query_params)
    assert address == {
        "page": "requests", "project": tenant.project, "range": "custom",
        "from": (NOW - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%MZ"),
        "to": (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ"),
        "status": ["429", "5xx"], "cache": ["miss", "bypass"], "stream": "no",
    }  # fmt: skip
    shared = await run(linked(tokens["admin"], **address))  # another user, a new session
    assert_clean(shared)
    assert [h.value for h in shared.header] == ["Requests"]
    assert shared.multiselect(key="requests_status").value == ["429", "5xx"]
    assert matching(shared) == 3
    table = shared.dataframe[0].value
    assert table["request id"].tolist() == at.dataframe[0].value["request id"].tolist()
    assert dict(shared.query_params) == address


async def test_a_bad_link_says_what_it_cannot_use_and_shows_the_defaults(
    tenant: Tenant, tokens: dict[str, str], clock: Callable[[datetime], None]
) -> None:
    clock(NOW)
    planted = "![x](http://127.0.0.1:9/x.png)"
    at = await run(
        linked(
            tokens["viewer"],
            page="requests",
            project=tenant.project,
            range="custom",
            to="2026-02-30T10:00Z",
            status=["5xx", "6xx", planted],
            cache="warm",
            p="-1",
            key=str(uuid.uuid4()),
            colour="blue",
        )  # fmt: skip
    )
    assert not at.error
    assert [h.value for h in at.header] == ["Requests"]
    warning = at.warning[0].value
    for said in ("from, to", "'6xx'", "cache = 'warm'", "p = '-1'", "key = ", "colour = 'blue'"):
        assert said in warning.replace("\\", ""), said
    assert "![x](" not in warning  # tenant text, plain (views.ui.plain)
    assert at.selectbox(key="range").value == "Last 24 hours"
    assert at.multiselect(key="requests_status").value == ["5xx"]
    assert matching(at) == 2  # the two 502s of the last 24 hours
    at.run()  # said once: the next view is quiet
    assert not at.warning
    nowhere = await run(linked(tokens["viewer"], page="nowhere", project="no-such-project"))
    assert [h.value for h in nowhere.header] == ["Overview"]
    assert "page = 'nowhere': no such page" in nowhere.warning[0].value.replace("\\", "")


async def test_filters_of_several_values_at_once(
    tenant: Tenant, tokens: dict[str, str], clock: Callable[[datetime], None]
) -> None:
    clock(NOW)
    cases = [
        ({"requests_status": ["ok"]}, 4),
        ({"requests_status": ["4xx"]}, 3),
        ({"requests_status": ["ok", "502"]}, 6),
        ({"requests_cache": ["exact", "semantic"]}, 2),
        ({"requests_cache": ["semantic", "bypass"]}, 4),
        ({"requests_stream": ["yes"]}, 3),
        ({"requests_endpoint": ["/v1/messages", "/v1/embeddings"]}, 3),
        ({"requests_status": ["ok"], "requests_stream": ["yes"],
          "requests_endpoint": ["/v1/chat/completions"]}, 1),
        ({"requests_property": "http", "requests_property_value": "502"}, 2),
        ({"requests_user": "u429"}, 2),
    ]  # fmt: skip
    for state, expected in cases:
        at = app(tokens["viewer"], "Requests", tenant.project)
        for key, value in state.items():
            at.session_state[key] = value
        at = await run(at)
        assert_clean(at)
        assert matching(at) == expected, state
