"""``watchllm projects budget`` and ``watchllm keys budget``: spend limits in USD per
calendar UTC day and month (``watchllm_shared.accounts.budgets``).

An option takes an amount of USD (``12.50``; 0 allows only cache hits) or ``none`` to
remove that budget; an option left out keeps its value; no option shows the budgets.
Limiter replicas apply a change within a second. Requests already in flight when a
budget runs out still finish and are charged (README, "Budgets").
"""

from __future__ import annotations

from decimal import Decimal

import click

from watchllm_shared.accounts import Budgets, BudgetStore
from watchllm_shared.accounts.budgets import KEEP
from watchllm_shared.cli.accounts_commands import parse_uuid, run_with_store
from watchllm_shared.cli.settings import CliSettings
from watchllm_shared.contracts.budgets import parse_usd


class BudgetValue(click.ParamType[Decimal | None]):
    name = "USD|none"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> Decimal | None:  # fmt: skip
        if isinstance(value, Decimal) or value is None or value is KEEP:
            return value
        text = str(value).strip().lower()
        if text == "none":
            return None
        try:
            return parse_usd(text)
        except ValueError as exc:
            self.fail(f"{exc} (give an amount of USD such as 12.50, or 'none')", param, ctx)


def _options(function: click.decorators.FC) -> click.decorators.FC:
    function = click.option("--monthly-usd", type=BudgetValue(), default=KEEP,
                            help="USD per calendar month (UTC), or 'none'.")(function)  # fmt: skip
    return click.option("--daily-usd", type=BudgetValue(), default=KEEP,
                        help="USD per calendar day (UTC), or 'none'.")(function)  # fmt: skip


@click.command("budget")
@click.argument("name")
@_options
@click.pass_obj
def project_budget(
    settings: CliSettings, name: str, daily_usd: Decimal | None, monthly_usd: Decimal | None
) -> None:
    """Show or set project NAME's budgets (all its keys together)."""
    budgets: Budgets = run_with_store(
        settings,
        lambda s: BudgetStore(s.pool, actor=s.actor).set_project_budgets(
            name, daily_usd, monthly_usd
        ),
    )
    click.echo(f"project {name} budgets: {budgets.describe()}")


@click.command("budget")
@click.argument("key_id")
@_options
@click.pass_obj
def key_budget(
    settings: CliSettings, key_id: str, daily_usd: Decimal | None, monthly_usd: Decimal | None
) -> None:
    """Show or set KEY_ID's own budgets (the project's apply too)."""
    key = parse_uuid(key_id)
    budgets: Budgets = run_with_store(
        settings,
        lambda s: BudgetStore(s.pool, actor=s.actor).set_key_budgets(key, daily_usd, monthly_usd),
    )
    click.echo(f"key {key} budgets: {budgets.describe()}")
