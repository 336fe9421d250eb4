"""``watchllm projects logging NAME``: store a project's request and answer bodies or
not, for how long, and what to redact first (``watchllm_shared.accounts.body_logging``).

``--redact`` takes the named redactions ``email,phone,card,secret`` (comma separated)
or one regular expression; repeat it for several (a regular expression with a comma
goes in an option of its own); ``--redact none`` keeps only what is always redacted
(secrets). A bad regular expression is refused here, before anything is changed.
Options left out keep their value; no option shows the setting.
"""

from __future__ import annotations

import click

from watchllm_shared.accounts import BodyLogging, BodyLoggingStore
from watchllm_shared.cli.accounts_commands import run_with_store
from watchllm_shared.cli.settings import CliSettings
from watchllm_shared.contracts.request_bodies import (
    MAX_RETENTION_DAYS,
    REDACTIONS,
    redaction_error,
)


def parse_redactions(values: tuple[str, ...]) -> list[str] | None:
    """The list ``--redact`` options give (None: none given); ``click.BadParameter``
    naming a pattern that is not a valid regular expression."""
    if not values:
        return None
    items: list[str] = []
    for value in values:
        parts = [part.strip() for part in value.split(",")]
        if value.strip().lower() == "none":
            continue
        items.extend(parts if all(part in REDACTIONS for part in parts) else [value])
    for item in items:
        if (error := redaction_error(item)) is not None:
            raise click.BadParameter(error, param_hint="--redact")
    return items


@click.command("logging")
@click.argument("name")
@click.option("--bodies", type=click.Choice(["on", "off"]), default=None,
              help="Store request and answer bodies (off by default).")  # fmt: skip
@click.option("--retention-days", type=click.IntRange(1, MAX_RETENTION_DAYS), default=None,
              help="Days a body is kept (default 30; the request log keeps its own).")  # fmt: skip
@click.option("--redact", multiple=True,
              help="email,phone,card,secret, or one regex; repeatable; 'none'.")  # fmt: skip
@click.pass_obj
def project_logging(
    settings: CliSettings, name: str, bodies: str | None, retention_days: int | None,
    redact: tuple[str, ...],
) -> None:  # fmt: skip
    """Show or set project NAME's body logging."""
    redactions = parse_redactions(redact)
    enabled = None if bodies is None else bodies == "on"
    setting: BodyLogging = run_with_store(
        settings,
        lambda s: BodyLoggingStore(s.pool, actor=s.actor).set_body_logging(
            name, enabled, retention_days, redactions
        ),
    )
    click.echo(f"project {name}: {setting.describe()}")
