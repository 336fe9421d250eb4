"""``watchllm projects limits`` and ``watchllm keys limits``: rate-limit overrides.

A limit option takes a positive integer, or ``none`` to remove that limit; an option
left out keeps its current value. Limiter replicas apply a change within a second.
"""

from __future__ import annotations

import click

from watchllm_shared.accounts import LimitStore, ProjectLimits
from watchllm_shared.accounts.limits import KEEP
from watchllm_shared.cli.accounts_commands import parse_uuid, run_with_store
from watchllm_shared.cli.settings import CliSettings


class LimitValue(click.ParamType[int | None]):
    name = "N|none"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:  # fmt: skip
        if isinstance(value, int) or value is None:
            return value
        text = str(value).strip().lower()
        if text == "none":
            return None
        if text.isascii() and text.isdigit() and int(text) > 0:
            return int(text)
        self.fail(f"{value!r} is neither a positive integer nor 'none'", param, ctx)


def _options(function: click.decorators.FC) -> click.decorators.FC:
    function = click.option("--tpm", type=LimitValue(), default=KEEP,
                            help="Tokens per minute, or 'none'.")(function)  # fmt: skip
    return click.option("--rpm", type=LimitValue(), default=KEEP,
                        help="Requests per minute, or 'none'.")(function)  # fmt: skip


def _show(limits: ProjectLimits) -> str:
    def text(value: int | None) -> str:
        return "-" if value is None else str(value)

    lines = [f"project {limits.project_id}: requests/day {limits.requests_per_day}, "
             f"rpm {text(limits.rpm)}, tpm {text(limits.tpm)}"]  # fmt: skip
    for key_id, (rpm, tpm) in sorted(limits.key_limits.items()):
        lines.append(f"  key {key_id}: rpm {text(rpm)}, tpm {text(tpm)}")
    return "\n".join(lines)


@click.command("limits")
@click.argument("name")
@_options
@click.pass_obj
def project_limits(settings: CliSettings, name: str, rpm: int | None, tpm: int | None) -> None:
    """Set project NAME's per-minute request and token limits (all its keys together)."""
    limits = run_with_store(
        settings, lambda s: LimitStore(s.pool, actor="cli").set_project_limits(name, rpm, tpm)
    )
    click.echo(_show(limits))


@click.command("limits")
@click.argument("key_id")
@_options
@click.pass_obj
def key_limits(settings: CliSettings, key_id: str, rpm: int | None, tpm: int | None) -> None:
    """Set KEY_ID's own per-minute request and token limits."""
    key = parse_uuid(key_id)
    limits = run_with_store(
        settings, lambda s: LimitStore(s.pool, actor="cli").set_key_limits(key, rpm, tpm)
    )
    click.echo(_show(limits))
