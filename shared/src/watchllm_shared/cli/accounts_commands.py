"""``watchllm projects …`` and ``watchllm keys …``: thin wrappers over AccountStore."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID

import asyncpg
import click

from watchllm_shared.accounts import (
    DEFAULT_ROTATION_GRACE_SECONDS,
    MAX_ROTATION_GRACE_SECONDS,
    AccountError,
    AccountStore,
    ApiKey,
    Budgets,
    Plan,
)
from watchllm_shared.cli.settings import CliSettings
from watchllm_shared.contracts.model_patterns import DEFAULT, PRICED, invalid_patterns

T = TypeVar("T")


def run_with_store(settings: CliSettings, action: Callable[[AccountStore], Awaitable[T]]) -> T:
    """Open a short-lived pool, run ``action``, turn failures into CLI errors."""

    async def _run() -> T:
        try:
            pool = await asyncpg.create_pool(
                settings.effective_database_url(), min_size=1, max_size=2
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise click.ClickException(f"cannot connect to Postgres: {exc}") from exc
        try:
            return await action(AccountStore(pool, actor="cli"))
        except asyncpg.UndefinedTableError as exc:
            raise click.ClickException("the schema is missing: run `watchllm migrate`") from exc
        except AccountError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            await pool.close()

    return asyncio.run(_run())


def parse_uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a key id (a UUID)") from exc


def _describe(key: ApiKey, now: datetime) -> str:
    state = "revoked" if key.revoked_at else "active"
    if key.revoked_at is None and key.expires_at is not None:
        state = (
            f"rotated, works until {key.expires_at:%Y-%m-%d %H:%M:%S}Z"
            if key.usable_at(now)
            else f"expired {key.expires_at:%Y-%m-%d %H:%M:%S}Z (rotated)"
        )
    budgets = Budgets(key.daily_budget_usd, key.monthly_budget_usd)
    shown = f"  budgets: {budgets.describe()}" if budgets != Budgets() else ""
    return f"{key.id}  {key.project_name:<20} {key.display_prefix}…  {state}{shown}"


@click.group()
def projects() -> None:
    """Create and list projects, change their plan and allowed models."""


@projects.command("create")
@click.argument("name")
@click.option(
    "--plan",
    type=click.Choice([p.value for p in Plan]),
    default=Plan.FREE.value,
    show_default=True,
    help="Daily request quota: FREE 1,000, STARTER 10,000, PRO 100,000.",
)
@click.pass_obj
def projects_create(settings: CliSettings, name: str, plan: str) -> None:
    """Create project NAME."""
    project = run_with_store(settings, lambda s: s.create_project(name, Plan(plan)))
    click.echo(f"created project {project.name} ({project.plan.value}) id={project.id}")


@projects.command("list")
@click.pass_obj
def projects_list(settings: CliSettings) -> None:
    """List projects."""
    for project in run_with_store(settings, lambda s: s.list_projects()):
        budgets = project.budgets
        shown = f"  budgets: {budgets.describe()}" if budgets != Budgets() else ""
        click.echo(f"{project.id}  {project.name:<20} {project.plan.value}{shown}")


@projects.command("set-plan")
@click.argument("name")
@click.argument("plan", type=click.Choice([p.value for p in Plan]))
@click.pass_obj
def projects_set_plan(settings: CliSettings, name: str, plan: str) -> None:
    """Move project NAME to PLAN."""
    project = run_with_store(settings, lambda s: s.set_plan(name, Plan(plan)))
    click.echo(f"project {project.name} is now on {project.plan.value}")


@projects.command("models")
@click.argument("name")
@click.option(
    "--add",
    "added",
    multiple=True,
    metavar="PATTERN",
    help="Also allow PATTERN (fnmatch, or @priced); repeatable. On a project"
    " without a list of its own, the list starts as @default.",
)
@click.option(
    "--remove",
    "removed",
    multiple=True,
    metavar="PATTERN",
    help="Stop allowing PATTERN (as written in the list); repeatable.",
)
@click.option(
    "--use-default",
    is_flag=True,
    help="Drop the project's list: the gateway's WATCHLLM_DEFAULT_ALLOWED_MODELS"
    " applies (priced models unless the operator set it).",
)
@click.pass_obj
def projects_models(
    settings: CliSettings,
    name: str,
    added: tuple[str, ...],
    removed: tuple[str, ...],
    use_default: bool,
) -> None:
    """Show or change the models project NAME may use.

    A list holds fnmatch patterns and the words @priced (every model the gateway prices)
    and @default (the gateway's default list). Gateways apply a change within a second.
    """  # fmt: skip
    if use_default and (added or removed):
        raise click.UsageError("--use-default drops the list: give it alone")
    invalid = invalid_patterns(added)
    if invalid:
        raise click.BadParameter(f"{invalid}: not a pattern, {PRICED} or {DEFAULT}")

    async def change(store: AccountStore) -> list[str] | None:
        current = await store.get_allowed_models(name)
        if use_default:
            patterns = None
        elif added or removed:
            start = [DEFAULT] if current is None else current
            patterns = [p for p in start if p not in removed]
            patterns += [p for p in added if p not in patterns]
        else:
            return current
        if patterns != current:
            await store.set_allowed_models(name, patterns)
        return patterns

    patterns = run_with_store(settings, change)
    if patterns is None:
        click.echo(f"project {name} has no list of its own: the gateway's default applies"
                   f" (WATCHLLM_DEFAULT_ALLOWED_MODELS, {PRICED} unless set)")  # fmt: skip
    else:
        click.echo(f"project {name} may use: {', '.join(patterns) or 'no model'}")


@click.group()
def keys() -> None:
    """Create, list, revoke and rotate API keys."""


@keys.command("create")
@click.option("--project", "project", required=True, help="Project the key belongs to.")
@click.option("--name", default=None, help="A label to tell keys apart.")
@click.option("--quiet", is_flag=True, help="Print only the key (for scripts).")
@click.pass_obj
def keys_create(settings: CliSettings, project: str, name: str | None, quiet: bool) -> None:
    """Create a key for a project and print it. It is shown only this once."""
    created = run_with_store(settings, lambda s: s.create_key(project, name))
    if quiet:
        click.echo(created.secret)
        return
    click.echo(f"key id: {created.key.id}")
    click.echo(f"key:    {created.secret}")
    click.echo("Store it now: WatchLLM keeps only its hash and cannot show it again.")


@keys.command("list")
@click.option("--project", default=None, help="Only this project's keys.")
@click.pass_obj
def keys_list(settings: CliSettings, project: str | None) -> None:
    """List keys (ids and display prefixes; never the keys themselves)."""
    listed = run_with_store(settings, lambda s: s.list_keys(project))
    now = datetime.now(UTC)
    for key in listed:
        click.echo(_describe(key, now))


@keys.command("revoke")
@click.argument("key_id")
@click.pass_obj
def keys_revoke(settings: CliSettings, key_id: str) -> None:
    """Revoke KEY_ID now; every gateway replica refuses it within a second."""
    key = run_with_store(settings, lambda s: s.revoke_key(parse_uuid(key_id)))
    click.echo(f"revoked {key.id} ({key.display_prefix}…)")


@keys.command("rotate")
@click.argument("key_id")
@click.option("--grace", default=DEFAULT_ROTATION_GRACE_SECONDS, show_default=True,
              type=click.IntRange(0, MAX_ROTATION_GRACE_SECONDS),
              help="Seconds the old key keeps working, to roll the new one out"
                   " (at most 30 days).")  # fmt: skip
@click.pass_obj
def keys_rotate(settings: CliSettings, key_id: str, grace: int) -> None:
    """Replace KEY_ID with a new key (printed once); the old one stops after --grace."""
    created = run_with_store(settings, lambda s: s.rotate_key(parse_uuid(key_id), grace))
    click.echo(f"new key id: {created.key.id}")
    click.echo(f"new key:    {created.secret}")
    when = "now" if grace == 0 else f"in {grace} s"
    click.echo(f"the old key {key_id} stops working {when}")
