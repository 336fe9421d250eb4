"""The operator's ``watchllm`` command."""

from __future__ import annotations

import click

from watchllm_shared.cli.accounts_commands import keys, projects
from watchllm_shared.cli.alert_commands import alerts
from watchllm_shared.cli.backup_commands import backup, restore
from watchllm_shared.cli.body_logging_commands import project_logging
from watchllm_shared.cli.budget_commands import key_budget, project_budget
from watchllm_shared.cli.cache_commands import cache
from watchllm_shared.cli.deployment.commands import check, loadtest
from watchllm_shared.cli.limits_commands import key_limits, project_limits
from watchllm_shared.cli.routes_commands import routes
from watchllm_shared.cli.settings import CliSettings
from watchllm_shared.cli.users_commands import users
from watchllm_shared.telemetry import configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """WatchLLM: a self-hosted gateway for LLM APIs."""
    settings = CliSettings()
    configure_logging("cli", settings.log_level)
    ctx.obj = settings


@cli.command()
@click.option(
    "--fake-provider",
    is_flag=True,
    help="Also start the built-in fake provider and route every model to it (demo).",
)
@click.option("--replicas", "--scale", "replicas", multiple=True, metavar="SERVICE=N[,…]",
              help="Run N processes of gateway, limiter, cache or analytics, e.g. "
              "--replicas gateway=2,limiter=2 (repeatable).")  # fmt: skip
@click.pass_obj
def up(settings: CliSettings, fake_provider: bool, replicas: tuple[str, ...]) -> None:
    """Run the whole system: stores (embedded unless URLs are set), migrations, services."""
    from watchllm_shared.cli.embedded_os import EmbeddedServerError
    from watchllm_shared.cli.replicas import parse_replicas
    from watchllm_shared.cli.up import run_up

    try:
        run_up(settings, fake_provider, parse_replicas(replicas))
    except EmbeddedServerError as exc:  # a data folder in use, a server that did not start
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option("--wait", "wait_seconds", default=0.0, show_default=True, type=float,
              help="Keep retrying an unreachable Postgres this many seconds (a Job "
              "starting with its database).")  # fmt: skip
@click.pass_obj
def migrate(settings: CliSettings, wait_seconds: float) -> None:
    """Apply the Postgres schema migrations (safe to run concurrently and repeatedly).

    Concurrent runs queue on an advisory lock; all pending revisions apply in one
    transaction. Exits non-zero on failure, so a Kubernetes Job retries it.
    """
    from watchllm_shared.accounts import migrate as migrations

    url = settings.effective_database_url()
    try:
        applied = migrations.upgrade_when_reachable(url, wait_seconds)
    except OSError as exc:
        raise click.ClickException(f"cannot connect to Postgres: {exc}") from exc
    except migrations.MigrationError as exc:
        raise click.ClickException(str(exc)) from exc
    head = migrations.head_revision()
    if applied:
        click.echo(f"applied {', '.join(applied)}; schema at revision {head}")
    else:
        click.echo(f"schema already at revision {head}; nothing to do")


@cli.command("fake-provider")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9000, show_default=True, type=int)
@click.option("--delay", default=0.0, show_default=True, type=float,
              help="Seconds to wait before every answer.")  # fmt: skip
@click.option("--chunk-delay", default=0.0, show_default=True, type=float,
              help="Seconds between streamed chunks.")  # fmt: skip
def fake_provider(host: str, port: int, delay: float, chunk_delay: float) -> None:
    """Serve a fake OpenAI/Anthropic provider (for demos and tests; never for production)."""
    from watchllm_shared.fake_provider import FakeProviderConfig
    from watchllm_shared.fake_provider.__main__ import serve

    config = FakeProviderConfig(default_delay_seconds=delay, chunk_delay_seconds=chunk_delay)
    serve(host, port, config)


projects.add_command(project_limits)
keys.add_command(key_limits)
projects.add_command(project_budget)
projects.add_command(project_logging)
keys.add_command(key_budget)
cli.add_command(projects)
cli.add_command(keys)
cli.add_command(cache)
cli.add_command(backup)
cli.add_command(restore)
cli.add_command(users)
cli.add_command(check)
cli.add_command(loadtest)
cli.add_command(routes)
cli.add_command(alerts)
