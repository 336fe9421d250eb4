"""The numbers and charts the pages show are what happened (issue 20): what a time window
covers, which cached prompts are used most, charts that draw a single hour. Each test
has a project of its own, with data made the way production makes it: requests through
the gateway, or events on the gateway's stream where their time must be chosen (the
app's clock pinned to match)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
import redis
from streamlit.testing.v1 import AppTest

from tests.analytics.conftest import make_event
from tests.dashboard.conftest import (
    Stack,
    Tenant,
    app,
    assert_clean,
    chat,
    new_tenant,
    publish,
    shown,
    wait_for,
    wait_stored,
)
from tests.support.processes import ANALYTICS_AUTH
from watchllm_shared.accounts import AccountStore, ApiKey, BudgetStore
from watchllm_shared.accounts.keys import generate_key
from watchllm_shared.contracts import CacheOutcome, RequestCompleted, RequestStatus
from watchllm_shared.contracts.budgets import SPEND_FUNCTION, charge_spend_keys

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_env")]


async def view(
    token: str, page: str, project: str, time_range: str | None = None, warned: bool = False
) -> AppTest:
    """The page as the app renders it; without errors, and without warnings unless
    ``warned`` (then only warnings)."""
    at = app(token, page, project)
    if time_range is not None:
        at.session_state["range"] = time_range
    at = await asyncio.to_thread(at.run)
    if warned:
        assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    else:
        assert_clean(at)
    return at


def per_key(at: AppTest) -> pd.DataFrame:
    """The Rate limits page's table of requests and 429s per key."""
    (table,) = [d.value for d in at.dataframe if "429s" in d.value.columns]
    return table


def ask(stack: Stack, key: str, text: str, model: str = "gpt-4o-mini") -> httpx.Response:
    return httpx.post(
        f"{stack.gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        timeout=10,
    )


def chart(at: AppTest, title: str) -> tuple[dict, pd.DataFrame]:
    """A chart's Vega-Lite spec and its data (long form: hour, series, value)."""
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        if spec.get("title") == title:
            data = pa.ipc.open_stream(element.proto.datasets[0].data.data).read_all()
            return spec, data.to_pandas()
    raise AssertionError(f"no chart titled {title!r}")


def every_value_drawn(spec: dict, data: pd.DataFrame) -> bool:
    """Whether each value shows: a bar or a point shows alone; a line or an area without
    points draws nothing for a value with no neighbouring value."""
    mark = spec["mark"] if isinstance(spec["mark"], dict) else {"type": spec["mark"]}
    if mark["type"] in ("bar", "point") or mark.get("point"):
        return True
    for _, series in data.sort_values("hour").groupby("series"):
        present = series["value"].notna().tolist()
        for i, here in enumerate(present):
            neighbours = present[max(0, i - 1) : i] + present[i + 1 : i + 2]
            if here and not any(neighbours):
                return False
    return True


async def test_last_hour_is_the_last_sixty_minutes_on_every_page(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str], clock
) -> None:
    """At 13:00:19, "Last hour" showed nothing of the requests made minutes before: the
    window began at the top of the hour."""
    tenant = await new_tenant(account_store, "window")
    now = datetime.now(UTC).replace(minute=0, second=19, microsecond=0) - timedelta(hours=3)
    common = {"key_id": tenant.key_id, "status": RequestStatus.OK}
    recent = [make_event(tenant.project_id, now - timedelta(minutes=m), **common)
              for m in range(1, 10)]  # fmt: skip
    refused = [
        make_event(
            tenant.project_id,
            now - timedelta(minutes=20),
            key_id=tenant.key_id,
            status=RequestStatus.RATE_LIMITED,
            http_status=429,
            error_type="rate_limit_exceeded",
        )  # fmt: skip
        for _ in range(2)
    ]
    outside = [make_event(tenant.project_id, now - timedelta(minutes=61), **common)]
    publish(stack, recent + refused + outside)
    wait_stored(stack, tenant.project_id, 12)
    clock(now)
    covers = f"Last hour: {now - timedelta(hours=1):%Y-%m-%d %H:%M} → {now:%H:%M} UTC"
    at = await view(tokens["viewer"], "Overview", tenant.project, "Last hour")
    assert "Requests: 11" in shown(at) and covers in shown(at)
    spec, data = chart(at, "Requests per hour")
    assert data["value"].sum() == 11
    at = await view(tokens["viewer"], "Requests", tenant.project, "Last hour")
    assert "11 requests match" in shown(at) and covers in shown(at)
    at = await view(tokens["viewer"], "Rate limits", tenant.project, "Last hour")
    assert "Requests refused with 429: 2" in shown(at) and covers in shown(at)
    assert per_key(at)["requests"].tolist() == ["11"]


async def test_charts_draw_a_single_hour_of_traffic(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """A fresh install has one hour of traffic: the cache's stacked areas drew nothing
    (an area needs two hours side by side), nor did lines without points over a week."""
    tenant = await new_tenant(account_store, "one-hour")
    for text in ("Is one hour enough?", "What about two?", "Is one hour enough?"):
        assert chat(stack.gateway, tenant.key, text).status_code == 200
    wait_stored(stack, tenant.project_id, 3)
    for time_range in ("Last hour", "Last 24 hours"):
        at = await view(tokens["viewer"], "Cache", tenant.project, time_range)
        spec, data = chart(at, "How requests were answered, per hour")
        assert data["value"].notna().any() and every_value_drawn(spec, data), time_range
    at = await view(tokens["viewer"], "Overview", tenant.project, "Last 7 days")
    for title in ("Latency (ms)", "Answered from the cache"):
        spec, data = chart(at, title)
        assert data["value"].notna().any() and every_value_drawn(spec, data), title


def _ask(stack: Stack, tenant: Tenant, text: str) -> tuple[str, str]:
    reply = chat(stack.gateway, tenant.key, text)
    assert reply.status_code == 200, reply.text
    return reply.headers["x-watchllm-cache"], reply.headers["x-watchllm-cache-key"]


async def test_top_cached_prompts_lead_with_the_most_hit_entries_even_when_old(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """160 entries whose most hit are the oldest: the page took the 50 newest, then
    sorted those by hits, so its top row had none of the most used."""
    tenant = await new_tenant(account_store, "top")
    # Semantic (so entries keep their question), but only the same text would match.
    await account_store.set_cache_settings(tenant.project, True, "semantic", 1.0, 86_400)
    favourites = [f"Which favourite number comes {i} places after one?" for i in range(5)]
    keys = {question: _ask(stack, tenant, question)[1] for question in favourites}  # oldest
    hits = dict.fromkeys(favourites, 0)

    def hit(question: str, wanted: int) -> bool:
        hits[question] += _ask(stack, tenant, question)[0] == "hit"
        return hits[question] >= wanted

    for rank, question in enumerate(favourites):  # 9, 8, 7, 6 and 5 hits
        wait_for(lambda q=question, n=9 - rank: hit(q, n), what=f"hits on {question!r}")
    for i in range(155):  # newer entries, never asked again
        keys[f"filler {i}"] = _ask(stack, tenant, f"Filler question number {i}, please?")[1]
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        wait_for(lambda: client.exists(*keys.values()) == 160, what="160 entries cached")
    finally:
        client.close()
    wait_for(lambda: _hit_rows(stack, tenant) == 35, what="the hits stored")
    at = await view(tokens["viewer"], "Cache", tenant.project)
    table = at.dataframe[0].value
    assert table["question"].head(5).tolist() == favourites
    assert table["hits"].head(5).tolist() == [9, 8, 7, 6, 5]
    assert len(table) == 50 and set(table["hits"].iloc[5:]) == {0}


def _hit_rows(stack: Stack, tenant: Tenant) -> int:
    now = datetime.now(UTC)
    reply = httpx.post(
        f"{stack.analytics.url}/v1/queries/project_cache_entry_hits",
        headers=ANALYTICS_AUTH,
        json={
            "project_id": str(tenant.project_id),
            "start": (now - timedelta(hours=2)).isoformat(),
            "end": (now + timedelta(minutes=5)).isoformat(),
            "limit": 500,
        },  # fmt: skip
        timeout=10,
    )
    return sum(int(row[1]) for row in reply.json()["rows"])


async def test_spend_without_a_price_is_said_where_spend_is_shown(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """A model missing from the price table cost $0.00 on every page, with no word."""
    tenant = await new_tenant(account_store, "unpriced")
    # Only priced models by default: the operator allows this one, and its spend is unknown.
    await account_store.set_allowed_models(tenant.project, ["@default", "gpt-custom-tune"])
    for i in range(3):
        reply = ask(stack, tenant.key, f"Unpriced question {i}", "gpt-custom-tune")
        assert reply.status_code == 200
    assert ask(stack, tenant.key, "A priced question").status_code == 200
    wait_stored(stack, tenant.project_id, 4)
    at = await view(tokens["viewer"], "Overview", tenant.project, warned=True)
    assert len(at.warning) == 1
    warning = shown(at)  # model names are Markdown-escaped; shown() reads them as shown
    assert "3 requests used models without a price: gpt-custom-tune (3)" in warning
    assert "WATCHLLM_PRICES" in warning and "WATCHLLM_PRICE_TABLE_PATH" in warning
    by_model = at.dataframe[0].value.set_index("model")["spend"]
    assert by_model["gpt-custom-tune"] == "$0.00 + 3 without a price"
    assert "without a price" not in by_model["gpt-4o-mini"]
    every_project = at.dataframe[2].value.set_index("project")["spend"]
    assert every_project[tenant.project].endswith(" + 3 without a price")
    at = await view(tokens["viewer"], "Requests", tenant.project)
    costs = dict(zip(at.dataframe[0].value["model"], at.dataframe[0].value["cost"], strict=False))
    assert costs["gpt-custom-tune"] == "$0.00 (no price)"
    assert not costs["gpt-4o-mini"].endswith("(no price)")


async def test_refused_requests_count_where_they_belong(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """A revoked key's requests fell under a project named 00000000-…, on no key's row,
    with a blank model; unknown keys' attempts were not told apart."""
    tenant = await new_tenant(account_store, "revoked")
    assert ask(stack, tenant.key, "Before the revocation").status_code == 200
    await account_store.revoke_key(tenant.key_id)
    codes: list[int] = []
    wait_for(lambda: codes.append(ask(stack, tenant.key, "After", "gpt-4o").status_code)
             or codes[-1] == 403, what="the revoked key refused")  # fmt: skip
    assert ask(stack, generate_key(), "Who am I?", "gpt-4o").status_code == 401
    total = 1 + len(codes)
    wait_stored(stack, tenant.project_id, total)
    at = await view(tokens["viewer"], "Requests", tenant.project)
    assert f"{total} requests match" in shown(at)
    refused = at.dataframe[0].value
    refused = refused[refused["HTTP"] == 403]
    prefix = (await account_store.get_key(tenant.key_id)).display_prefix
    assert refused["model"].tolist() == ["gpt-4o"]
    assert refused["key"].tolist() == [f"first ({prefix}…)"]
    at = await view(tokens["viewer"], "Rate limits", tenant.project)
    assert per_key(at)["requests"].tolist() == [str(total)]
    at = await view(tokens["viewer"], "Overview", tenant.project)
    projects = at.dataframe[2].value["project"].tolist()
    assert "00000000-0000-0000-0000-000000000000" not in projects
    assert "(no project: key missing, malformed or unknown)" in projects
    assert "came with a key that is missing, malformed or unknown" in shown(at)


async def test_shares_say_what_they_are_of_and_429s_are_not_errors(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """Overview's "From the cache 27.5 %" and Cache's "Hit rate 30.3 %" had unstated
    denominators; the project's own 429s counted as errors; the status card cut
    "rate_limited" off."""
    tenant = await new_tenant(account_store, "shares")
    now = datetime.now(UTC) - timedelta(minutes=5)

    def event(status: RequestStatus, cache: CacheOutcome, http: int = 200) -> RequestCompleted:
        return make_event(tenant.project_id, now, key_id=tenant.key_id, status=status,
                          cache=cache, cache_similarity=None, http_status=http,
                          error_type="rate_limit_exceeded" if http == 429 else None)  # fmt: skip

    events = [event(RequestStatus.OK, CacheOutcome.MISS) for _ in range(6)]
    events += [event(RequestStatus.OK, CacheOutcome.HIT) for _ in range(2)]
    events += [event(RequestStatus.RATE_LIMITED, CacheOutcome.BYPASS, 429) for _ in range(2)]
    publish(stack, events)
    wait_stored(stack, tenant.project_id, 10)
    at = await view(tokens["viewer"], "Overview", tenant.project)
    text = shown(at)
    assert "Error rate: 0.0%" in text and "Rate limited (429): 20.0%" in text
    assert "From the cache: 20.0%" in text and "Shares are of all 10 requests" in text
    at = await view(tokens["viewer"], "Cache", tenant.project)
    text = shown(at)
    assert "Hit rate: 25.0%" in text
    assert "2 hits of the 8 requests that asked the cache" in text
    assert "Of all 10 requests, 20.0% were answered from the cache" in text
    at = app(tokens["viewer"], "Requests", tenant.project)
    at.session_state["requests_status"] = ["429"]
    at = await asyncio.to_thread(at.run)
    assert_clean(at)
    assert "Status: **rate_limited** (HTTP 429) · error rate_limit_exceeded" in shown(at)
    # A quarter-width card holds about a dozen characters of its large type.
    assert all(len(str(m.value)) <= 12 for m in at.metric), [m.value for m in at.metric]


async def test_spend_and_tokens_per_key_and_model_in_one_table(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """Who spent what on which model could only be seen key by key through the filter,
    and the Overview showed no token totals."""
    tenant = await new_tenant(account_store, "per-key")
    second = (await account_store.create_key(tenant.project, "second")).key
    first = await account_store.get_key(tenant.key_id)
    when = datetime.now(UTC) - timedelta(minutes=10)
    sent = [  # key, model, requests, tokens in and out each, cost each, without a price
        (first, "gpt-4o-mini", 3, 100, 50, "0.001", False),
        (first, "gpt-4o", 2, 200, 100, "0.01", False),
        (second, "gpt-4o-mini", 1, 1000, 10, "0.5", False),
        (second, "gpt-custom-tune", 2, 40, 4, "0", True),
    ]
    publish(stack, [
        make_event(tenant.project_id, when, key_id=key.id, model=model, prompt_tokens=p,
                   completion_tokens=c, cost_usd=Decimal(cost), cost_saved_usd=Decimal(0),
                   cache=CacheOutcome.MISS, unpriced=unpriced)
        for key, model, n, p, c, cost, unpriced in sent for _ in range(n)
    ])  # fmt: skip
    wait_stored(stack, tenant.project_id, 8)
    at = await view(tokens["viewer"], "Overview", tenant.project, warned=True)
    text = shown(at)
    assert "Tokens in: 1,780" in text and "Tokens out: 368" in text
    table = at.dataframe[1].value
    rows = table[["key", "model", "requests", "tokens in", "tokens out", "spend"]]
    assert rows.values.tolist() == [
        [f"second ({second.display_prefix}…)", "gpt-4o-mini", "1", "1,000", "10", "$0.50"],
        [f"first ({first.display_prefix}…)", "gpt-4o", "2", "400", "200", "$0.020"],
        [f"first ({first.display_prefix}…)", "gpt-4o-mini", "3", "300", "150", "$0.0030"],
        [f"second ({second.display_prefix}…)", "gpt-custom-tune", "2", "80", "8",
         "$0.00 + 2 without a price"],
    ]  # fmt: skip


async def test_requests_are_found_by_the_start_of_an_id(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """The search on Requests matched only a whole request, trace or event id."""
    tenant = await new_tenant(account_store, "search")
    when = datetime.now(UTC) - timedelta(minutes=10)
    events = [
        make_event(tenant.project_id, when + timedelta(seconds=i), key_id=tenant.key_id,
                   request_id=request_id, trace_id=f"trace-{request_id}")
        for i, request_id in enumerate(("feed0001aaaa", "feed0002bbbb", "beef0003cccc"))
    ]  # fmt: skip
    publish(stack, events)
    wait_stored(stack, tenant.project_id, 3)

    async def search(text: str) -> AppTest:
        at = app(tokens["viewer"], "Requests", tenant.project)
        at.session_state["requests_search"] = text
        at = await asyncio.to_thread(at.run)
        assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
        return at

    at = await search("feed")
    assert "2 requests match" in shown(at)
    assert at.dataframe[0].value["request id"].tolist() == ["feed0002bbbb", "feed0001aaaa"]
    for start in ("trace-beef", str(events[0].event_id)[:13], "beef0003cccc"):
        assert "1 requests match" in shown(await search(start)), start
    assert "0 requests match" in shown(await search("%"))  # text, not a LIKE pattern


async def test_the_overview_shows_each_deployments_requests_errors_fallbacks_and_latency(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """Events as the gateway writes them for routed requests (issue 15): the table's
    numbers are theirs, another project's traffic on the same deployments is not."""
    tenant, other = await asyncio.gather(new_tenant(account_store, "deployments"),
                                         new_tenant(account_store, "elsewhere"))  # fmt: skip
    now = datetime.now(UTC) - timedelta(minutes=5)

    def routed(deployment: str | None, latency: float, **fields: object) -> RequestCompleted:
        given = {
            "key_id": tenant.key_id,
            "deployment": deployment,
            "latency_ms": latency,
            "upstream_latency_ms": latency - 10,
            "upstream_attempts": 1,
            **fields,
        }
        return make_event(tenant.project_id, now, **given)

    failed = {"status": RequestStatus.UPSTREAM_ERROR, "http_status": 502}
    events = [
        routed("east", 100), routed("east", 200, fallback_model="fb-east"),
        routed("east", 300, upstream_attempts=2), routed("east", 400, **failed),
        routed("west", 50, provider="anthropic"), routed("west", 70, provider="anthropic"),
        routed(None, 5, cache=CacheOutcome.HIT),  # a cache hit: no deployment answered
        make_event(other.project_id, now, deployment="east"),
    ]  # fmt: skip
    publish(stack, events)
    wait_stored(stack, tenant.project_id, 7)
    wait_stored(stack, other.project_id, 1)
    at = await view(tokens["viewer"], "Overview", tenant.project, "Last 24 hours")
    (table,) = [d.value for d in at.dataframe if "deployment" in d.value.columns]
    assert table.to_dict("records") == [
        {"deployment": "east", "provider": "openai", "requests": "4", "errors": "25.0%",
         "fallbacks": "1", "retried": "1", "p50 latency": "300 ms", "p95 latency": "400 ms",
         "upstream p50": "290 ms"},
        {"deployment": "west", "provider": "anthropic", "requests": "2", "errors": "0.0%",
         "fallbacks": "0", "retried": "0", "p50 latency": "70 ms", "p95 latency": "70 ms",
         "upstream p50": "60 ms"},
    ]  # fmt: skip
    assert "By deployment" in shown(at)


def label(key: ApiKey) -> str:
    return f"key {key.name} ({key.display_prefix}…)"


def charge(stack: Stack, tenant: Tenant, key_id: uuid.UUID, usd: str, at: datetime) -> None:
    """Spend charged as the limiter charges a completed request's cost: the library's
    function, here on a chosen clock (the event's XADD time and "now")."""
    keys = charge_spend_keys(tenant.project_id, key_id, uuid.uuid4())
    nanos, ms = int(Decimal(usd) * 10**9), int(at.timestamp() * 1000)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        assert client.fcall(SPEND_FUNCTION, len(keys), *keys, nanos, ms, ms) == 1
    finally:
        client.close()


async def test_spend_against_budgets_and_the_time_left_at_this_rate(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str], clock
) -> None:
    """Per project and key, today and this month: what was charged, against its budget,
    and how long the rest lasts at the rate so far (on the app's pinned clock). A viewer
    sees the numbers and no form."""
    tenant = await new_tenant(account_store, "spend")
    second = (await account_store.create_key(tenant.project, "second")).key
    third = (await account_store.create_key(tenant.project, "third")).key
    budgets = BudgetStore(account_store.pool, actor="tests")
    await budgets.set_project_budgets(tenant.project, Decimal("10"), Decimal("1000"))
    await budgets.set_key_budgets(tenant.key_id, monthly_usd=Decimal("5"))
    await budgets.set_key_budgets(second.id, daily_usd=Decimal("1"))
    await budgets.set_key_budgets(third.id, daily_usd=Decimal("2"))
    now = datetime(2026, 12, 10, 6, 0, tzinfo=UTC)  # 6 h into the day, 9 d 6 h into the month
    charge(stack, tenant, tenant.key_id, "2", now - timedelta(days=3))  # this month only
    charge(stack, tenant, tenant.key_id, "1", now)
    charge(stack, tenant, second.id, "2", now)
    clock(now)
    at = await view(tokens["viewer"], "Rate limits", tenant.project)
    (table,) = [d.value for d in at.dataframe if "at this rate" in d.value.columns]
    rows = {(r.pop("who"), r.pop("window")): list(r.values()) for r in table.to_dict("records")}
    first = f"key first ({(await account_store.get_key(tenant.key_id)).display_prefix}…)"
    day, month = "2026-12-11 00:00 UTC (in 18 h 0 min)", "2027-01-01 00:00 UTC (in 21 d 18 h)"
    none = ["no budget", "—", "—"]
    assert rows == {  # spent, budget, remaining, used, resets, at this rate
        # $3 in 6 h: the $7 left lasts 14 h; $5 in 222 h: the $995 left, 44,178 h.
        ("project", "today"): ["$3.00", "$10.00", "$7.00", "30.0%", day, "14 h 0 min left"],
        ("project", "this month"): ["$5.00", "$1,000.00", "$995.00", "0.5%", month,
                                    "1840 d 18 h: lasts past the reset"],
        (first, "today"): ["$1.00", *none, day, "no budget"],
        (first, "this month"): ["$3.00", "$5.00", "$2.00", "60.0%", month, "6 d 4 h left"],
        (label(second), "today"): ["$2.00", "$1.00", "$0.00", "200.0%", day, "spent"],
        (label(second), "this month"): ["$2.00", *none, month, "no budget"],
        (label(third), "today"): ["$0.00", "$2.00", "$2.00", "0.0%", day, "no spend yet"],
        (label(third), "this month"): ["$0.00", *none, month, "no budget"],
    }  # fmt: skip
    assert "Admins set budgets here" in shown(at)
    assert not [w for w in (*at.text_input, *at.button) if str(w.key).startswith("budget_")]
