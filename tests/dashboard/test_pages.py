"""Every page signed out, as a viewer and as an admin, through Streamlit's AppTest
running the real app against the running system (see conftest)."""

from __future__ import annotations

import asyncio

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import unique
from tests.dashboard.conftest import PASSWORD, Accounts, Traffic, app, assert_clean, shown
from watchllm_dashboard.views.sidebar import PAGES
from watchllm_dashboard.views.ui import plain
from watchllm_shared.accounts import AccountStore, Plan, SessionStore

# Inputs that only filter what is shown.
FILTERS = {"requests_search", "requests_user", "requests_property_value", "range_from", "range_to"}
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_env", "traffic")]


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def change_buttons(at: AppTest) -> list:
    return [b for b in at.button if b.key != "sign_out"]


@pytest.mark.parametrize("page", PAGES)
def test_signed_out_every_page_is_the_sign_in_form(page: str) -> None:
    at = app(page=page).run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["WatchLLM"]
    assert at.text_input(key="sign_in_username") is not None
    assert not at.header and not at.radio and not at.dataframe and not at.metric
    assert "watchllm users create" in shown(at)


def test_signing_in_through_the_form(accounts: Accounts) -> None:
    at = app().run()
    at.text_input(key="sign_in_username").input(accounts.viewer)
    at.text_input(key="sign_in_password").input("wrong " + PASSWORD)
    at.button(key="sign_in_submit").click().run()
    assert "Could not sign in" in at.error[0].value and not at.header
    at.text_input(key="sign_in_password").input(PASSWORD)
    at.button(key="sign_in_submit").click().run()
    assert_clean(at)
    assert [h.value for h in at.header] == ["Overview"]
    assert f"Signed in as **{accounts.viewer}** (viewer)" in shown(at)
    at.button(key="sign_out").click().run()
    assert "Signed out." in shown(at) and not at.header
    at.run()  # the ended session stays ended
    assert not at.header


async def test_an_ended_session_goes_back_to_the_sign_in_form(
    account_store: AccountStore, accounts: Accounts
) -> None:
    sessions = SessionStore(account_store.pool)
    signed_in = await sessions.sign_in(accounts.admin, PASSWORD)
    at = await asyncio.to_thread(app(signed_in.token).run)
    assert [h.value for h in at.header] == ["Overview"]
    await sessions.sign_out(signed_in.token)
    at = await asyncio.to_thread(at.run)
    assert not at.header and "session has ended or expired" in shown(at)


def check_overview(at: AppTest, accounts: Accounts, traffic: Traffic) -> None:
    assert f"Requests: {traffic.requests}" in shown(at)
    assert "Error rate: 0.0%" not in shown(at)  # the history holds failures
    assert charts(at) == 4
    models = set(at.dataframe[0].value["model"])
    assert {"gpt-4o-mini", "gpt-4o"} <= models
    assert accounts.project in set(at.dataframe[2].value["project"])
    users = at.dataframe[3].value  # by end user, the breakdown's default
    assert set(users["end user"]) == {"user-0", "user-1", "user-2", "(none)"}


def check_requests(at: AppTest, accounts: Accounts, traffic: Traffic) -> None:
    assert f"{traffic.requests} requests match" in shown(at)
    log = at.dataframe[0].value
    assert len(log) == min(traffic.requests, 50) and set(log["status"]) >= {"ok", "rate_limited"}
    assert at.subheader[0].value.startswith("Request ")


def check_cache(at: AppTest, accounts: Accounts, traffic: Traffic) -> None:
    text = shown(at)
    assert f"Exact hits: {traffic.exact_hits}" in text and "Semantic hits: 5" in text
    assert charts(at) == 2
    entries = at.dataframe[0].value
    hits = dict(zip(entries["question"], entries["hits"], strict=True))
    # Ranked by the hits each entry answered (the events name the entry), not by age.
    assert entries["question"].iloc[0] == "What is the capital of France?"
    assert hits["What is the capital of France?"] == traffic.exact_hits
    assert hits["Name three primary colours."] == 0


def check_rate_limits(at: AppTest, accounts: Accounts, traffic: Traffic) -> None:
    assert "Requests refused with 429: 7" in shown(at)
    assert any("project · requests/day" in p.proto.text for p in at.get("progress"))
    assert charts(at) == 1
    (per_key,) = [d.value for d in at.dataframe if "429s" in d.value.columns]
    assert per_key["429s"].tolist() == ["7"]


def check_keys(at: AppTest, accounts: Accounts, traffic: Traffic) -> None:
    keys = at.dataframe[0].value
    assert keys["name"].tolist() == ["main"] and keys["state"].tolist() == ["active"]
    assert keys["last used"].iloc[0] in ("just now", "1 min ago", "2 min ago")
    assert not at.code  # a key is shown only right after it was made


def check_projects(at: AppTest, accounts: Accounts, traffic: Traffic) -> None:
    assert accounts.project in set(at.dataframe[0].value["project"])
    assert "Audit log" in shown(at)


def check_health(at: AppTest, accounts: Accounts, traffic: Traffic) -> None:
    text = shown(at)
    assert "Gateway: healthy" in text and "Analytics service: healthy" in text
    states = dict(zip(at.dataframe[0].value["part"], at.dataframe[0].value["state"], strict=True))
    assert states == {
        **dict.fromkeys(("database", "redis", "qdrant", "clickhouse"), "connected"),
        **dict.fromkeys(("limiter", "cache", "analytics", "events"), "up"),
    }


CHECKS = {
    "Overview": check_overview,
    "Requests": check_requests,
    "Cache": check_cache,
    "Rate limits": check_rate_limits,
    "API keys": check_keys,
    "Projects & settings": check_projects,
    "Health": check_health,
}


@pytest.mark.parametrize("role", ["viewer", "admin"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_for_each_role(
    page: str, role: str, tokens: dict[str, str], accounts: Accounts, traffic: Traffic
) -> None:
    at = app(tokens[role], page, accounts.project).run()
    assert_clean(at)
    assert [h.value for h in at.header] == [page]
    assert f"Signed in as **{getattr(accounts, role)}** ({role})" in shown(at)
    CHECKS[page](at, accounts, traffic)
    buttons = change_buttons(at)
    if role == "viewer":
        assert all(b.disabled for b in buttons), [b.key for b in buttons if not b.disabled]
        editable = [w.key for w in at.text_input if not w.disabled]
        assert set(editable) <= FILTERS, f"viewers get no editable inputs: {editable}"
        assert "Dashboard users" not in shown(at)
    elif page in ("API keys", "Projects & settings"):
        assert buttons and not any(b.disabled for b in buttons if b.key != "cache_delete")


def test_pages_are_switched_in_the_sidebar(tokens: dict[str, str], accounts: Accounts) -> None:
    at = app(tokens["viewer"], project=accounts.project).run()
    for page in PAGES:
        at.radio(key="page").set_value(page).run()
        assert_clean(at)
        assert [h.value for h in at.header] == [page]


def test_the_request_log_pages_filters_and_finds_one_request(
    tokens: dict[str, str], accounts: Accounts, traffic: Traffic
) -> None:
    at = app(tokens["viewer"], "Requests", accounts.project).run()
    assert f"page 1 of {-(-traffic.requests // 50)}" in shown(at)
    at.number_input(key="requests_page").set_value(2).run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == traffic.requests - 50
    at.number_input(key="requests_page").set_value(1)
    at.multiselect(key="requests_status").set_value(["429"]).run()
    log = at.dataframe[0].value
    assert "7 requests match" in shown(at) and set(log["status"]) == {"rate_limited"}
    wanted = log["request id"].iloc[3]
    at.multiselect(key="requests_status").set_value([])
    at.text_input(key="requests_search").input(wanted).run()
    assert "1 requests match" in shown(at)
    assert at.dataframe[0].value["request id"].tolist() == [wanted]
    assert at.subheader[0].value == f"Request {wanted}"


def test_requests_filter_by_end_user_and_property_and_the_overview_breaks_down_by_one(
    tokens: dict[str, str], accounts: Accounts, traffic: Traffic
) -> None:
    history = traffic.history
    at = app(tokens["viewer"], "Requests", accounts.project).run()
    at.text_input(key="requests_user").input("user-1").run()
    assert_clean(at)
    wanted = sum(e.end_user == "user-1" for e in history)
    assert f"{wanted} requests match" in shown(at)
    at.selectbox(key="requests_property").set_value("feature").run()
    at.text_input(key="requests_property_value").input("chat").run()
    wanted = sum(e.end_user == "user-1" and e.properties["feature"] == "chat" for e in history)
    assert 0 < wanted and f"{wanted} requests match" in shown(at)
    detail = at.table[0].value["value"]  # st.table renders Markdown: the cells are escaped
    assert (detail["end user"], detail["properties"]) == (plain("user-1"), plain("feature=chat"))
    overview = app(tokens["viewer"], "Overview", accounts.project).run()
    overview.selectbox(key="overview_breakdown").set_value("feature").run()
    assert_clean(overview)
    (table,) = [d.value for d in overview.dataframe if "feature" in d.value.columns]
    counts = dict(zip(table["feature"], table["requests"], strict=True))
    assert counts == {
        "chat": str(sum(e.properties["feature"] == "chat" for e in history)),
        "search": str(sum(e.properties["feature"] == "search" for e in history)),
        "(none)": str(traffic.requests - len(history)),  # the gateway's, untagged
    }


async def test_every_page_of_a_project_without_traffic(
    account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """ClickHouse answers an empty result without column names: pages must still work."""
    project = unique("quiet")
    await account_store.create_project(project, Plan.FREE)
    for page in PAGES:
        at = await asyncio.to_thread(app(tokens["admin"], page, project).run)
        assert_clean(at)
        assert [h.value for h in at.header] == [page]
    at = await asyncio.to_thread(app(tokens["admin"], "Overview", project).run)
    assert "Requests: 0" in shown(at) and "Error rate: —" in shown(at)
