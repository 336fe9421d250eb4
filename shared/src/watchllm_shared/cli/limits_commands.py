"""``watchllm projects limits`` and ``watchllm keys limits``: rate and concurrency
limit overrides (``--concurrency``: requests in flight at once; a project without its
own gets the gateways' default, ``WATCHLLM_PROJECT_CONCURRENCY``).

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
    function = click.option("--concurrency", type=LimitValue(), default=KEEP,
                            help="Requests in flight at once, or 'none'.")(function)  # fmt: skip
    function = click.option("--tpm", type=LimitValue(), default=KEEP,
                            help="Tokens per minute, or 'none'.")(function)  # fmt: skip
    return click.option("--rpm", type=LimitValue(), default=KEEP,
                        help="Requests per minute, or 'none'.")(function)  # fmt: skip


def _show(limits: ProjectLimits) -> str:
    def text(value: int | None) -> str:
        return "-" if value is None else str(value)

    concurrency = "default" if limits.concurrency is None else str(limits.concurrency)
    lines = [f"project {limits.project_id}: requests/day {limits.requests_per_day}, "
             f"rpm {text(limits.rpm)}, tpm {text(limits.tpm)}, "
             f"concurrency {concurrency}"]  # fmt: skip
    for key_id in sorted(limits.key_limits.keys() | limits.key_concurrency.keys()):
        rpm, tpm = limits.key_limits.get(key_id, (None, None))
        lines.append(f"  key {key_id}: rpm {text(rpm)}, tpm {text(tpm)}, "
                     f"concurrency {text(limits.key_concurrency.get(key_id))}")  # fmt: skip
    return "\n".join(lines)


@click.command("limits")
@click.argument("name")
@_options
@click.pass_obj
def project_limits(
    settings: CliSettings, name: str, rpm: int | None, tpm: int | None, concurrency: int | None
) -> None:
    """Set project NAME's per-minute request and token limits and its concurrency limit
    (all its keys together)."""
    limits = run_with_store(
        settings,
        lambda s: LimitStore(s.pool, actor="cli").set_project_limits(name, rpm, tpm, concurrency),
    )
    click.echo(_show(limits))


@click.command("limits")
@click.argument("key_id")
@_options
@click.pass_obj
def key_limits(
    settings: CliSettings, key_id: str, rpm: int | None, tpm: int | None, concurrency: int | None
) -> None:
    """Set KEY_ID's own per-minute request and token limits and concurrency limit."""
    key = parse_uuid(key_id)
    limits = run_with_store(
        settings,
        lambda s: LimitStore(s.pool, actor="cli").set_key_limits(key, rpm, tpm, concurrency),
    )
    click.echo(_show(limits))
