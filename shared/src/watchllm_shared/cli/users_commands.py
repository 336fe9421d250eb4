"""``watchllm users …``: dashboard users (thin wrappers over ``accounts.UserStore``).

Passwords are never arguments (they would land in shell history and ``ps``): they are
prompted for twice, or read as one line from standard input with ``--password-stdin``
(for scripts: ``printf '%s\\n' "$PW" | watchllm users create ana --admin --password-stdin``).
"""

from __future__ import annotations

import sys

import click

from watchllm_shared.accounts import Role, User, UserStore
from watchllm_shared.cli.accounts_commands import run_with_store
from watchllm_shared.cli.settings import CliSettings

_STDIN_HELP = "Read the password as one line from standard input instead of prompting."


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.ClickException("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _describe(user: User) -> str:
    state = "active" if user.disabled_at is None else f"disabled {user.disabled_at:%Y-%m-%d}"
    return f"{user.username:<24} {user.role.value:<7} created {user.created_at:%Y-%m-%d}  {state}"


@click.group()
def users() -> None:
    """Dashboard users: create, list, disable, enable, set passwords."""


@users.command("create")
@click.argument("username")
@click.option("--admin", "role", flag_value=Role.ADMIN.value, help="May change everything.")
@click.option("--viewer", "role", flag_value=Role.VIEWER.value, help="May only look.")
@click.option("--analyst", "role", flag_value=Role.ANALYST.value,
              help="May only look, and also read logged request and answer bodies.")  # fmt: skip
@click.option("--password-stdin", is_flag=True, help=_STDIN_HELP)
@click.pass_obj
def users_create(settings: CliSettings, username: str, role: str | None,
                 password_stdin: bool) -> None:  # fmt: skip
    """Create dashboard user USERNAME with --admin, --viewer or --analyst."""
    if role is None:
        raise click.UsageError("say --admin, --viewer or --analyst")
    password = _password(password_stdin)
    user = run_with_store(
        settings, lambda s: UserStore(s.pool, actor="cli").create_user(username, password,
                                                                        Role(role))
    )  # fmt: skip
    click.echo(f"created {user.role.value} {user.username}")


@users.command("list")
@click.pass_obj
def users_list(settings: CliSettings) -> None:
    """List users, their role and state (never passwords)."""
    for user in run_with_store(settings, lambda s: UserStore(s.pool).list_users()):
        click.echo(_describe(user))


@users.command("disable")
@click.argument("username")
@click.pass_obj
def users_disable(settings: CliSettings, username: str) -> None:
    """Disable USERNAME now: sign-in refused, open dashboard sessions ended."""
    user = run_with_store(settings, lambda s: UserStore(s.pool, actor="cli").disable_user(username))
    click.echo(f"disabled {user.username}; their dashboard sessions are ended")


@users.command("enable")
@click.argument("username")
@click.pass_obj
def users_enable(settings: CliSettings, username: str) -> None:
    """Enable USERNAME again (and lift a sign-in lockout)."""
    user = run_with_store(settings, lambda s: UserStore(s.pool, actor="cli").enable_user(username))
    click.echo(f"enabled {user.username}")


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help=_STDIN_HELP)
@click.pass_obj
def users_set_password(settings: CliSettings, username: str, password_stdin: bool) -> None:
    """Set USERNAME's password; their open dashboard sessions are ended."""
    password = _password(password_stdin)
    user = run_with_store(
        settings, lambda s: UserStore(s.pool, actor="cli").set_password(username, password)
    )
    click.echo(f"password of {user.username} changed; their dashboard sessions are ended")
