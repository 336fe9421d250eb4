"""Spend against budget on the Rate limits page (issue 16): today's and this month's
spend of the project and of each key, against its budget, with how long the rest lasts
at the window's rate so far; and, for admins, the form that sets the budgets through the
same ``BudgetStore`` as ``watchllm projects|keys budget`` (audited, validated alike).

The form shows the chosen owner's current budgets, and a field left as shown is kept:
saving the daily budget never clears the monthly one (issue 20, finding 1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data.budgets import Owner, Spend
from watchllm_dashboard.views import ui
from watchllm_dashboard.views.context import PageContext
from watchllm_shared.accounts import AccountError, ApiKey, Budgets, InvalidInputError, Project
from watchllm_shared.accounts.budgets import KEEP, Keep
from watchllm_shared.contracts.budgets import NANOS_PER_USD

WINDOWS = {"daily": "today", "monthly": "this month"}


def key_label(key: ApiKey) -> str:
    return f"key {key.name or 'unnamed'} ({key.display_prefix}…)"


def _usd(nanos: int | None) -> str:
    return "—" if nanos is None else fmt.money(nanos / NANOS_PER_USD)


def _outlook(spend: Spend) -> str:
    """How long the rest lasts at this window's rate so far."""
    if spend.budget_nanos is None:
        return "no budget"
    if spend.over:
        return "spent"
    left = spend.seconds_left
    if left is None:
        return "no spend yet"
    if left >= spend.resets_in_seconds:
        return f"{fmt.span(left)}: lasts past the reset"
    return f"{fmt.span(left)} left"


def _row(spend: Spend) -> dict[str, str]:
    reset = datetime.fromtimestamp(spend.end_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {
        "who": spend.owner,
        "window": WINDOWS[spend.period],
        "spent": _usd(spend.spent_nanos),
        "budget": "no budget" if spend.budget_nanos is None else _usd(spend.budget_nanos),
        "remaining": _usd(spend.remaining_nanos),
        "used": fmt.percent(spend.spent_nanos, spend.budget_nanos),
        "resets": f"{reset} (in {fmt.span(spend.resets_in_seconds)})",
        "at this rate": _outlook(spend),
    }


def _spend(ctx: PageContext, project: Project, keys: list[ApiKey]) -> None:
    owners = [Owner("project", None, project.budgets.daily_usd, project.budgets.monthly_usd)]
    owners += [Owner(key_label(k), k.id, k.daily_budget_usd, k.monthly_budget_usd) for k in keys]
    spends = ctx.actions.spend(project, owners, ctx.runtime.clock())
    active = {key_label(k) for k in keys if k.revoked_at is None}
    # A revoked key is listed while it has spend this month (and so in the totals).
    spent_this_month = {s.owner for s in spends if s.period == "monthly" and s.spent_nanos}
    shown = [s for s in spends if s.owner in {"project"} | active | spent_this_month]
    st.subheader("Spend against budget")
    st.caption(
        "Costs charged by the limiter per calendar UTC day and month; a budget refuses"
        " requests once spent (requests already running still finish). The time left is"
        " the rest of the budget at this window's rate so far."
    )
    st.dataframe(pd.DataFrame([_row(s) for s in shown]), hide_index=True)


def _shown(value: Decimal | None) -> str:
    return "" if value is None else f"{value.normalize():f}"


def _entered(name: str, text: str, current: Decimal | None) -> Decimal | None | Keep:
    """What to save for one field: ``KEEP`` when it holds the current budget, None when
    empty (or "none"), else the amount (the store checks its range, as for the CLI)."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return KEEP if current is None else None
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise InvalidInputError(f"{name}: {text!r} is not an amount of USD") from exc
    if not amount.is_finite():
        return amount  # refused by the store, with its reason
    return KEEP if amount == current else amount


def _show_current(owner: object, budgets: Budgets) -> None:
    """The stored budgets into the inputs when first shown, when another owner is chosen,
    or when they changed since (a save, another admin); what the admin typed stays in
    between."""
    marker = (owner, budgets)
    if st.session_state.get("budget_shown") != marker or "budget_daily" not in st.session_state:
        st.session_state["budget_shown"] = marker
        st.session_state["budget_daily"] = _shown(budgets.daily_usd)
        st.session_state["budget_monthly"] = _shown(budgets.monthly_usd)


def _form(ctx: PageContext, project: Project, keys: list[ApiKey]) -> None:
    choices: dict[str, tuple[ApiKey | None, Budgets]] = {
        f"project {project.name}": (None, project.budgets)
    }
    for k in keys:
        if k.revoked_at is None:
            choices[key_label(k)] = (k, Budgets(k.daily_budget_usd, k.monthly_budget_usd))
    # Chosen outside the form, so the inputs show the chosen owner's budgets at once.
    name = str(st.selectbox("Set the budgets of", list(choices), key="budget_choice"))
    key, current = choices[name]
    _show_current(key.id if key else project.id, current)
    with st.form("budgets"):
        cells = st.columns(2)
        daily = cells[0].text_input("Daily USD (empty: no budget)", key="budget_daily")
        monthly = cells[1].text_input("Monthly USD (empty: no budget)", key="budget_monthly")
        st.caption("0 allows only answers from the cache. Budgets apply within a second.")
        if not st.form_submit_button("Save budgets", key="budget_submit"):
            return

    def change() -> Budgets | None:
        new_daily = _entered("daily budget", daily, current.daily_usd)
        new_monthly = _entered("monthly budget", monthly, current.monthly_usd)
        if new_daily is KEEP and new_monthly is KEEP:
            return None
        if key is None:
            return ctx.actions.set_project_budgets(project.name, new_daily, new_monthly)
        return ctx.actions.set_key_budgets(key.id, new_daily, new_monthly)

    try:
        saved = change()
    except AccountError as exc:
        st.error(ui.plain(exc))
        return
    if saved is None:
        st.info("Nothing changed.")
        return
    ui.flash(f"Saved the budgets of {ui.plain(name)}: {saved.describe()}.")
    st.rerun()


def render(ctx: PageContext, project: Project) -> None:
    keys = ctx.actions.keys(project.name)
    _spend(ctx, project, keys)
    if ctx.is_admin:
        _form(ctx, project, keys)
    else:
        st.caption("Admins set budgets here (or `watchllm projects budget NAME`).")
