"""Changes made on the pages take effect in the running system: keys at the gateway,
limits and budgets at the limiter, cache flushes and deletions at the cache service,
settings and users in Postgres; each lands in the audit log under the admin's name. A
viewer's attempt is refused by the action layer itself."""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import redis
from streamlit.testing.v1 import AppTest

from tests.analytics.conftest import make_event
from tests.conftest import unique
from tests.dashboard.conftest import (
    PASSWORD,
    Accounts,
    Stack,
    app,
    assert_clean,
    chat,
    entry_cached,
    new_tenant,
    publish,
    query,
    shown,
    wait_stored,
)
from tests.dashboard.conftest import wait_for as wait_until
from tests.dashboard.test_tenant_text import ESCAPED, rendered_as_markdown
from watchllm_dashboard.actions import Actions
from watchllm_dashboard.data.bodies import Conversation, LoggedBodies, Message, Part, conversation
from watchllm_dashboard.data.window import TimeWindow
from watchllm_dashboard.main import shared_runtime
from watchllm_dashboard.views.ui import plain
from watchllm_shared.accounts import (
    AccountStore,
    Budgets,
    BudgetStore,
    LimitStore,
    PermissionDeniedError,
    Plan,
    Role,
    SessionStore,
    UserStore,
)
from watchllm_shared.accounts.audit import audit, recent_audit
from watchllm_shared.accounts.body_logging import BodyLoggingStore
from watchllm_shared.accounts.budgets import KEEP as KEEP_BUDGET
from watchllm_shared.accounts.keys import display_prefix
from watchllm_shared.accounts.limits import KEEP
from watchllm_shared.contracts.limits import limits_key
from watchllm_shared.contracts.request_bodies import (
    REQUEST_BODIES_STREAM,
    TRUNCATED_MARKER,
    RequestBodies,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_env")]


async def new_project(store: AccountStore) -> tuple[str, str, uuid.UUID]:
    """(project name, key, key id): a project of the test's own, so changes stay local."""
    name = unique("chg")
    await store.create_project(name, Plan.PRO)
    created = await store.create_key(name, "first")
    return name, created.secret, created.key.id


async def actions_of(pool: asyncpg.Pool, actor: str) -> list[str]:
    rows = await pool.fetch("SELECT action FROM audit_log WHERE actor = $1 ORDER BY id", actor)
    return [r["action"] for r in rows]


def run(at: AppTest) -> AppTest:
    at.run()
    assert_clean(at)
    return at


async def page(token: str, name: str, project: str) -> AppTest:
    return await asyncio.to_thread(run, app(token, name, project))


async def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click()
    return await asyncio.to_thread(run, at)


def refused(stack: Stack, key: str) -> bool:
    return chat(stack.gateway, key, "ping").status_code in (401, 403)


async def test_a_key_created_on_the_page_works_at_once_and_is_shown_once(
    stack: Stack, account_store: AccountStore, accounts: Accounts, tokens: dict[str, str]
) -> None:
    project, _, _ = await new_project(account_store)
    at = await page(tokens["admin"], "API keys", project)
    at.text_input(key="key_create_name").input("made-on-the-page")
    at = await click(at, "key_create_submit")
    secrets = [c.value for c in at.code]
    assert len(secrets) == 1 and secrets[0].startswith("lgw_")
    assert "cannot show it again" in shown(at)
    assert chat(stack.gateway, secrets[0], "hello").status_code == 200
    at = await asyncio.to_thread(run, at)
    assert not at.code and secrets[0] not in shown(at)
    assert "made-on-the-page" in set(at.dataframe[0].value["name"])
    assert "key.create" in await actions_of(account_store.pool, f"dashboard:{accounts.admin}")


async def test_a_key_in_its_grace_period_is_offered_for_revocation_not_rotation(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    project, old_key, _ = await new_project(account_store)
    at = await page(tokens["admin"], "API keys", project)
    at.number_input(key="key_rotate_grace").set_value(3600)
    at = await click(at, "key_rotate_submit")
    new_key = at.code[0].value
    assert chat(stack.gateway, old_key, "still in grace").status_code == 200
    at = await page(tokens["admin"], "API keys", project)
    rotatable = " ".join(at.selectbox(key="key_rotate_choice").options)
    revocable = " ".join(at.selectbox(key="key_revoke_choice").options)
    assert display_prefix(new_key) in rotatable and display_prefix(old_key) not in rotatable
    assert display_prefix(old_key) in revocable and display_prefix(new_key) in revocable


async def test_rotation_and_revocation_on_the_page_take_effect_at_the_gateway(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    project, old_key, _ = await new_project(account_store)
    assert chat(stack.gateway, old_key, "before").status_code == 200
    at = await page(tokens["admin"], "API keys", project)
    at.number_input(key="key_rotate_grace").set_value(0)
    at = await click(at, "key_rotate_submit")
    new_key = at.code[0].value
    assert new_key.startswith("lgw_") and new_key != old_key
    wait_until(lambda: refused(stack, old_key), what="the rotated key refused")
    assert chat(stack.gateway, new_key, "after").status_code == 200
    at = await page(tokens["admin"], "API keys", project)
    at.checkbox(key="key_revoke_confirm").check()
    at = await click(at, "key_revoke_submit")
    assert "Revoked" in shown(at)
    wait_until(lambda: refused(stack, new_key), what="the revoked key refused")
    states = at.dataframe[0].value["state"].tolist()
    assert all(s.startswith("revoked") for s in states), states


async def test_a_limit_set_on_the_page_is_enforced_and_its_usage_shown(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    project, key, _ = await new_project(account_store)
    at = await page(tokens["admin"], "Projects & settings", project)
    at.number_input(key="settings_rpm").set_value(3)
    at = await click(at, "project_limits_submit")
    assert "Saved plan and limits" in shown(at)
    at = await page(tokens["admin"], "Rate limits", project)
    wait_until(lambda: "requests/minute: 0 of 3" in shown(run(at)), what="the limit on the page")
    codes = [chat(stack.gateway, key, f"q{i}").status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]  # the limiter synced the new limit from Postgres
    at = await asyncio.to_thread(run, at)
    assert "project · requests/minute: 3 of 3 (100.0%)" in [
        p.proto.text for p in at.get("progress")
    ]


async def test_the_key_limits_form_shows_the_chosen_keys_limits_and_saves_only_changes(
    account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """Choosing a key with rpm 10 showed 0 / 0, and saving a tpm removed its rpm."""
    project, _, first = await new_project(account_store)
    second = (await account_store.create_key(project, "second")).key
    limits = LimitStore(account_store.pool, actor="tests")
    await limits.set_key_limits(first, 10, None)
    await limits.set_key_limits(second.id, None, 7)
    at = await page(tokens["admin"], "Projects & settings", project)

    def shown_limits() -> tuple[int, int]:
        rpm, tpm = at.number_input(key="key_limits_rpm"), at.number_input(key="key_limits_tpm")
        return int(rpm.value), int(tpm.value)

    assert at.selectbox(key="key_limits_choice").value.startswith("first (")
    assert shown_limits() == (10, 0)
    at.selectbox(key="key_limits_choice").set_value(f"second ({second.display_prefix}…)")
    at = await asyncio.to_thread(run, at)
    assert shown_limits() == (0, 7)
    at.selectbox(key="key_limits_choice").set_value(
        at.selectbox(key="key_limits_choice").options[0]
    )
    at = await asyncio.to_thread(run, at)
    assert shown_limits() == (10, 0)
    at.number_input(key="key_limits_tpm").set_value(5000)
    at = await click(at, "key_limits_submit")
    saved, untouched = await account_store.get_key(first), await account_store.get_key(second.id)
    assert (saved.rpm_limit, saved.tpm_limit) == (10, 5000)
    assert (untouched.rpm_limit, untouched.tpm_limit) == (None, 7)
    assert shown_limits() == (10, 5000)


async def test_budgets_saved_on_the_page_reach_the_limiter_audited_keeping_the_other(
    stack: Stack, account_store: AccountStore, accounts: Accounts, tokens: dict[str, str]
) -> None:
    project, _, key_id = await new_project(account_store)
    project_id = (await account_store.get_project(project)).id
    await BudgetStore(account_store.pool, actor="tests").set_project_budgets(
        project, Decimal("10"), Decimal("200")
    )
    at = await page(tokens["admin"], "Rate limits", project)

    def fields() -> tuple[str, str]:
        return at.text_input(key="budget_daily").value, at.text_input(key="budget_monthly").value

    assert at.selectbox(key="budget_choice").value == f"project {project}"
    assert fields() == ("10", "200")
    at.text_input(key="budget_daily").input("12.5")
    at = await click(at, "budget_submit")
    assert f"Saved the budgets of project {project}: daily 12.5 USD, monthly 200 USD" in shown(at)
    assert (await account_store.get_project(project)).budgets == Budgets(
        Decimal("12.5"), Decimal("200")
    )
    assert fields() == ("12.5", "200")
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:  # the limiter copied it from Postgres: 12.5 USD in nano-dollars
        wait_until(lambda: client.hget(limits_key(project_id), "bd") == b"12500000000",
                   what="the daily budget at the limiter")  # fmt: skip
    finally:
        client.close()
    # A key's: refused with the store's reason, as the CLI's; then only what was typed.
    choice = at.selectbox(key="budget_choice")
    choice.set_value(next(o for o in choice.options if o.startswith("key first")))
    at = await asyncio.to_thread(run, at)
    assert fields() == ("", "")
    for typed, reason in (("-3", "a budget cannot be negative (-3 USD)"),
                          ("ten", "'ten' is not an amount of USD")):  # fmt: skip
        at.text_input(key="budget_monthly").input(typed)
        at.button(key="budget_submit").click()
        at = await asyncio.to_thread(at.run)
        assert f"monthly budget: {reason}" in shown(at)
    at.text_input(key="budget_monthly").input("5")
    at = await click(at, "budget_submit")
    key = await account_store.get_key(key_id)
    assert (key.daily_budget_usd, key.monthly_budget_usd) == (None, Decimal("5"))
    assert fields() == ("", "5")
    entries = [e for e in await recent_audit(account_store.pool, 10, project_id)
               if e.actor == f"dashboard:{accounts.admin}"]  # fmt: skip
    assert [(e.action, e.key_id, e.details) for e in entries] == [
        ("key.budget", key_id, {"monthly_budget_usd": "5"}),
        ("project.budget", None, {"daily_budget_usd": "12.5"}),
    ]


async def test_the_audit_log_names_the_key_and_hides_the_kept_marker(
    account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """The log showed "tpm=-1" (the CLI's "keep it") and a revocation with no details."""
    project, _, key_id = await new_project(account_store)
    await LimitStore(account_store.pool, actor="cli").set_key_limits(key_id, 20, KEEP)
    async with account_store.pool.acquire() as conn:  # as written before the kept value
        await audit(conn, "cli", "key.limits", None, key_id, {"rpm": KEEP, "tpm": 500})
    await LimitStore(account_store.pool, actor="cli").set_key_limits(key_id, None, KEEP)
    await account_store.revoke_key(key_id)
    at = await page(tokens["admin"], "Projects & settings", project)
    log = next(d.value for d in at.dataframe if "what" in d.value.columns)
    prefix = (await account_store.get_key(key_id)).display_prefix
    mine = log[log["key"] == f"first ({prefix}…)"]
    assert mine["what"].tolist()[:4] == ["key.revoke", "key.limits", "key.limits", "key.limits"]
    assert mine["details"].tolist()[1:4] == ["rpm removed", "tpm=500", "rpm=20"]


async def test_rotation_keeps_the_old_key_working_for_an_hour_unless_told(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """The grace defaulted to 0 s while the page said the old key keeps working."""
    project, old_key, old_id = await new_project(account_store)
    at = await page(tokens["admin"], "API keys", project)
    assert at.number_input(key="key_rotate_grace").value == 3600
    at = await click(at, "key_rotate_submit")
    assert "it stops in 1 h 0 min" in shown(at)
    assert chat(stack.gateway, old_key, "still working?").status_code == 200
    expires = (await account_store.get_key(old_id)).expires_at
    assert expires is not None
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)


async def test_cache_entries_are_deleted_and_the_project_flushed_from_the_page(
    stack: Stack, account_store: AccountStore, accounts: Accounts, tokens: dict[str, str]
) -> None:
    project, key, _ = await new_project(account_store)
    question = "Which river flows through Vienna?"

    def cached() -> bool:
        """The gateway answers from the cache; a miss stores the answer again."""
        return chat(stack.gateway, key, question).headers["x-watchllm-cache"] == "hit"

    # Waits are on the entry in Redis, then one request says what a caller sees.
    entry = chat(stack.gateway, key, question).headers["x-watchllm-cache-key"]
    wait_until(lambda: entry_cached(stack, entry), what="the answer cached")
    assert cached()
    at = await page(tokens["admin"], "Cache", project)
    assert question in set(at.dataframe[0].value["question"])
    at = await click(at, "cache_delete")
    assert "Deletion sent" in shown(at)
    wait_until(lambda: not entry_cached(stack, entry), what="the entry deleted")
    assert not cached()
    wait_until(lambda: entry_cached(stack, entry), what="the answer cached again")
    assert cached()
    at = await page(tokens["admin"], "Cache", project)
    at.checkbox(key="cache_flush_confirm").check()
    at = await asyncio.to_thread(run, at)  # the box enables the button
    at = await click(at, "cache_flush")
    assert f"Flush of {project} sent" in shown(at)
    wait_until(lambda: not entry_cached(stack, entry), what="the project flushed")
    assert not cached()
    done = await actions_of(account_store.pool, f"dashboard:{accounts.admin}")
    assert {"cache.delete", "cache.flush"} <= set(done)


async def test_settings_saved_on_the_page_reach_postgres(
    account_store: AccountStore, tokens: dict[str, str]
) -> None:
    project, _, key_id = await new_project(account_store)
    at = await page(tokens["admin"], "Projects & settings", project)
    at.selectbox(key="settings_plan").set_value("STARTER")
    at = await click(at, "project_limits_submit")
    at.selectbox(key="cache_mode").set_value("exact")
    at.number_input(key="cache_ttl").set_value(600)
    at.text_input(key="allowed_models").input("gpt-4o*, claude-*")
    at = await click(at, "cache_settings_submit")
    at.number_input(key="key_limits_tpm").set_value(5000)
    at = await click(at, "key_limits_submit")
    assert (await account_store.get_project(project)).plan is Plan.STARTER
    settings = await account_store.get_cache_settings(project)
    assert (settings.mode, settings.ttl_seconds) == ("exact", 600)
    assert await account_store.get_allowed_models(project) == ["gpt-4o*", "claude-*"]
    assert (await account_store.get_key(key_id)).tpm_limit == 5000
    at.text_input(key="project_create_name").input("bad name!")
    at.button(key="project_create_submit").click()
    at = await asyncio.to_thread(at.run)
    assert "invalid project name" in at.error[0].value  # refused with the module's reason


async def test_users_are_created_and_disabled_on_the_page(
    account_store: AccountStore, accounts: Accounts, tokens: dict[str, str]
) -> None:
    name = unique("new-viewer")
    at = await page(tokens["admin"], "Projects & settings", accounts.project)
    at.text_input(key="user_create_name").input(name)
    at.text_input(key="user_create_password").input(PASSWORD)
    at = await click(at, "user_create_submit")
    assert f"Created viewer {name}" in shown(at)
    sessions = SessionStore(account_store.pool)
    signed_in = await sessions.sign_in(name, PASSWORD)
    assert signed_in.user.role is Role.VIEWER
    at.selectbox(key="user_state_choice").set_value(name)
    at = await click(at, "user_disable")
    assert await sessions.session_user(signed_in.token) is None
    assert (await UserStore(account_store.pool).get_user(name)).disabled_at is not None


@pytest.fixture
def viewer_actions(accounts: Accounts) -> Actions:
    """The app's own runtime (opened once per process) with the viewer signed in."""
    runtime = shared_runtime()
    return Actions(runtime, runtime.run(UserStore(runtime.pool).get_user(accounts.viewer)))


CHANGES: dict[str, tuple[Any, ...]] = {
    "create_project": ("never-made", Plan.FREE),
    "set_plan": ("{project}", Plan.FREE),
    "set_project_limits": ("{project}", 1, 1),
    "set_key_limits": ("{key_id}", 1, 1),
    "set_project_budgets": ("{project}", Decimal("1"), KEEP_BUDGET),
    "set_key_budgets": ("{key_id}", KEEP_BUDGET, None),
    "set_cache_settings": ("{project}", False, "exact", None, 1),
    "set_allowed_models": ("{project}", ["none"]),
    "create_key": ("{project}", "x"),
    "rotate_key": ("{key_id}", 0),
    "revoke_key": ("{key_id}",),
    "flush_cache": ("{project}",),
    "delete_cache_entry": ("watchllm:cache:exact:v1:{x}:y",),
    "create_user": ("someone-new", PASSWORD, Role.ADMIN),
    "disable_user": ("{admin}",),
    "enable_user": ("{admin}",),
}


def test_every_change_is_listed() -> None:
    public = {
        n for n, f in inspect.getmembers(Actions, inspect.isfunction) if not n.startswith("_")
    }
    reads = {
        "projects",
        "keys",
        "limits",
        "limit_usage",
        "spend",
        "cache_settings",
        "allowed_models",
        "cached_entries",
        "audit",
        "keys_by_id",
        "users",
        "request_bodies",
        "search_bodies",
    }
    assert public - reads == set(CHANGES)


@pytest.mark.parametrize("change", CHANGES)
async def test_a_viewer_is_refused_every_change_by_the_action_layer(
    change: str, viewer_actions: Actions, accounts: Accounts, account_store: AccountStore
) -> None:
    values = {"{project}": accounts.project, "{key_id}": accounts.key_id, "{admin}": accounts.admin}
    args = [values.get(a, a) if isinstance(a, str) else a for a in CHANGES[change]]
    before = await account_store.pool.fetchval("SELECT max(id) FROM audit_log")
    with pytest.raises(PermissionDeniedError):
        await asyncio.to_thread(getattr(viewer_actions, change), *args)
    after = await account_store.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE id > $1 AND actor LIKE 'dashboard:%'", before
    )
    assert after == 0
    assert (await account_store.get_key(accounts.key_id)).revoked_at is None


# Issue 17: bodies as the gateway stores them (JSON, redacted), in both API shapes, with
# a tool call and its result each; the OpenAI one carries image and link Markdown.
IMAGE_AND_LINK = "![t](http://127.0.0.1:9/x.png) [click](http://evil.example/x)"
OPENAI_BODIES = (
    {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You answer about the weather."},
        {"role": "user", "content": f"Weather in Paris? {IMAGE_AND_LINK}"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": f"get_weather {IMAGE_AND_LINK}", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"}]},
    {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
     "message": {"role": "assistant", "content": "It is 18 C and sunny in Paris."}}]},
)  # fmt: skip
ANTHROPIC_BODIES = (
    {"model": "claude-3-5-haiku", "max_tokens": 100,
     "system": [{"type": "text", "text": "You are a librarian."}], "messages": [
        {"role": "user", "content": "Find a book on tides."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
         "name": "search_catalogue", "input": {"q": "tides"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
         "content": "The Tides, by R. Moon"}]}]},
    {"type": "message", "role": "assistant", "stop_reason": "end_turn",
     "content": [{"type": "text", "text": "Try The Tides, by R. Moon."}]},
)  # fmt: skip


def logged(stack: Stack, project_id: uuid.UUID, request_id: str, endpoint: str,
           bodies: tuple[dict[str, Any], dict[str, Any]]) -> str:  # fmt: skip
    """``bodies`` on the bodies stream the stack's analytics reads, as the gateway
    writes them; returns the request id."""
    request, response = (json.dumps(body) for body in bodies)
    entry = RequestBodies(
        request_id=request_id, project_id=project_id, endpoint=endpoint,
        occurred_at=datetime.now(UTC), request=request, response=response,
    )  # fmt: skip
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        client.xadd(REQUEST_BODIES_STREAM, entry.to_stream_fields())  # type: ignore[arg-type]
    finally:
        client.close()
    return request_id


async def test_the_conversation_is_shown_to_admins_and_analysts_each_view_audited(
    stack: Stack, account_store: AccountStore, accounts: Accounts, tokens: dict[str, str]
) -> None:
    """A viewer reads no body (a line says who may); an analyst and an admin see the
    conversation of an OpenAI and an Anthropic request; each view is audited once."""
    tenant = await new_tenant(account_store, "bodies")
    analyst = unique("analyst")
    await UserStore(account_store.pool, actor="tests").create_user(analyst, PASSWORD, Role.ANALYST)
    tokens = {**tokens, "analyst": (await SessionStore(account_store.pool).sign_in(
        analyst, PASSWORD)).token}  # fmt: skip
    when = datetime.now(UTC) - timedelta(minutes=5)
    openai = logged(stack, tenant.project_id, unique("openai"), "/v1/chat/completions",
                    OPENAI_BODIES)  # fmt: skip
    anthropic = logged(stack, tenant.project_id, unique("anthropic"), "/v1/messages",
                       ANTHROPIC_BODIES)  # fmt: skip
    publish(stack, [  # the newest first in the log: the detail shown by default
        make_event(tenant.project_id, when, key_id=tenant.key_id, request_id=openai),
        make_event(tenant.project_id, when + timedelta(seconds=1), key_id=tenant.key_id,
                   request_id=anthropic, endpoint="/v1/messages", provider="anthropic"),
    ])  # fmt: skip
    wait_stored(stack, tenant.project_id, 2)
    for request_id in (openai, anthropic):
        wait_until(lambda r=request_id: bool(query(stack, "request_bodies", request_id=r,
                   project_id=str(tenant.project_id))["rows"]), what="bodies stored")  # fmt: skip

    async def views() -> list[tuple[str, str]]:
        rows = await account_store.pool.fetch(
            "SELECT actor, details->>'request_id' AS request_id FROM audit_log"
            " WHERE action = 'request.bodies_viewed' AND project_id = $1 ORDER BY id",
            tenant.project_id,
        )
        return [(r["actor"].removeprefix("dashboard:"), r["request_id"]) for r in rows]

    def texts(at: AppTest) -> list[str]:
        return [str(code.value) for code in at.code]

    at = await page(tokens["viewer"], "Requests", tenant.project)
    assert "visible to admins and analysts" in shown(at)
    assert not texts(at) and await views() == []
    assert "requests_body_text" not in [w.key for w in at.text_input]  # no search either

    at = await page(tokens["analyst"], "Requests", tenant.project)
    assert texts(at) == ["You are a librarian.", "Find a book on tides.",
                         '{\n  "q": "tides"\n}', "The Tides, by R. Moon",
                         "Try The Tides, by R. Moon."]  # fmt: skip
    assert "Tool call: search_catalogue" in shown(at) and "Tool result for toolu_1" in shown(at)
    at.selectbox(key="requests_detail").set_value(1)
    at = await asyncio.to_thread(at.run)
    assert_clean(at)
    assert texts(at) == ["You answer about the weather.", f"Weather in Paris? {IMAGE_AND_LINK}",
                         '{\n  "city": "Paris"\n}', "18 C and sunny",
                         "It is 18 C and sunny in Paris."]  # fmt: skip
    # Tenant text: in code blocks as is, elsewhere (the tool's name) escaped.
    assert f"Tool call: {plain(f'get_weather {IMAGE_AND_LINK}')}" in [c.value for c in at.caption]
    assert not [t for t in rendered_as_markdown(at) if "](" in ESCAPED.sub("", t)]
    at = await asyncio.to_thread(at.run)  # a rerun of the same view: not a new one
    assert texts(at)[-1] == "It is 18 C and sunny in Paris."
    at.text_input(key="requests_body_text").input("TIDES")  # in the Anthropic one only
    at = await asyncio.to_thread(at.run)
    assert_clean(at)
    assert at.dataframe[0].value["request id"].tolist() == [anthropic]
    assert "1 requests whose request or answer contains “TIDES”" in shown(at)
    searches = await account_store.pool.fetch(
        "SELECT actor, details->>'text' AS text, details->>'matches' AS matches FROM audit_log"
        " WHERE action = 'request.bodies_searched' AND project_id = $1", tenant.project_id,
    )  # fmt: skip
    assert [tuple(r) for r in searches] == [(f"dashboard:{analyst}", "TIDES", "1")]
    # What was searched for tells what the bodies hold: a viewer's audit log hides it.
    at = await page(tokens["viewer"], "Projects & settings", tenant.project)
    (audit_log,) = [d.value for d in at.dataframe if "details" in d.value.columns]
    searched = audit_log[audit_log["what"] == "request.bodies_searched"]["details"].tolist()
    assert searched and "TIDES" not in searched[0] and "text hidden" in searched[0]
    assert await views() == [(analyst, anthropic), (analyst, openai)]

    at = await page(tokens["admin"], "Requests", tenant.project)
    assert texts(at)[-1] == "Try The Tides, by R. Moon."
    assert await views() == [
        (analyst, anthropic), (analyst, openai), (accounts.admin, anthropic)
    ]  # fmt: skip


def test_bodies_are_refused_to_a_viewer_by_the_action_layer(
    viewer_actions: Actions, accounts: Accounts
) -> None:
    project = next(p for p in viewer_actions.projects() if p.name == accounts.project)
    with pytest.raises(PermissionDeniedError, match="admins and analysts"):
        viewer_actions.request_bodies(project, "any-request")
    with pytest.raises(PermissionDeniedError, match="admins and analysts"):
        viewer_actions.search_bodies(project, TimeWindow.last("Last hour"), "any text")


STORED_AS_TEXT = 'data: {"choices": [{"delta": {"content": "Hel'  # a stream not assembled
CUT = '{"messages": [{"role": "user", "content": "abc' + TRUNCATED_MARKER.format(omitted=9)


@pytest.mark.parametrize(
    ("request_text", "response_text", "laid_out"),
    [
        (CUT, STORED_AS_TEXT, Conversation(raw_request=CUT, raw_answer=STORED_AS_TEXT)),
        (json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
         json.dumps({"error": {"type": "rate_limit_exceeded", "message": "slow down"}}),
         Conversation(messages=(Message("user", (Part("text", "hi"),)),),
                      answer=(Message("error", (Part("text", "slow down"),)),),
                      extras={"model": "m"})),
        (json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}), "",
         Conversation(messages=(Message("user", (Part("text", "hi"),)),), extras={"model": "m"})),
    ],
)  # fmt: skip
def test_bodies_that_are_not_a_chat_are_shown_as_stored(
    request_text: str, response_text: str, laid_out: Conversation
) -> None:
    """A body cut at the cap or a stream kept as its events is shown as stored; a refusal's
    error is the answer; no answer is no answer (the page says which)."""
    stored = LoggedBodies("r", "/v1/chat/completions", request_text, response_text,
                          datetime.now(UTC))  # fmt: skip
    assert conversation(stored) == laid_out


async def test_a_request_logged_by_the_gateway_shows_its_conversation(
    stack: Stack, account_store: AccountStore, tokens: dict[str, str]
) -> None:
    """The whole way: a project turns body logging on, a request goes through the
    gateway, and the admin reads its question and answer on the request's detail."""
    tenant = await new_tenant(account_store, "logged")
    await BodyLoggingStore(account_store.pool, actor="tests").set_body_logging(
        tenant.project, enabled=True
    )
    question = f"Conversation marker {uuid.uuid4().hex[:8]}: name a colour."
    sent: list[httpx.Response] = []
    now = datetime.now(UTC)
    window = {"project_id": str(tenant.project_id), "text": question,
              "start": (now - timedelta(minutes=5)).isoformat(),
              "end": (now + timedelta(minutes=5)).isoformat()}  # fmt: skip

    found: list[str] = []  # request ids whose bodies are stored

    def logged() -> bool:
        """Ask again until the gateway logs bodies (it sees the setting within 0.5 s)."""
        sent.append(chat(stack.gateway, tenant.key, question, **{"x-watchllm-no-cache": "1"}))
        found[:] = [row[0] for row in query(stack, "project_request_search", **window)["rows"]]
        return bool(found)

    wait_until(logged, what="bodies logged")
    wait_stored(stack, tenant.project_id, len(sent))
    reply = next(r for r in sent if r.headers["x-request-id"] == found[0])
    at = app(tokens["admin"], "Requests", tenant.project)
    at = await asyncio.to_thread(at.run)
    detail = at.selectbox(key="requests_detail")
    detail.set_value(next(i for i, o in enumerate(detail.options) if found[0] in o))
    at = await asyncio.to_thread(at.run)
    assert_clean(at)
    answer = reply.json()["choices"][0]["message"]["content"]
    assert [str(code.value) for code in at.code] == [question, answer]
