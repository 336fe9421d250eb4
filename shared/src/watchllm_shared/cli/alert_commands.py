"""``watchllm alerts add|list|remove|test``: webhooks called when a budget threshold is
crossed, a project's error rate stays high, gateways fail open on the limiter, or a
dead-letter stream grows (``watchllm_shared.accounts.alerts`` keeps the rules; the
limiter evaluates and delivers them, ``watchllm_limiter.alerts``).

``test`` queues a test alert on the same stream real alerts take, so it is signed,
retried and logged the same way, then waits (``--wait``) for the first attempt's result
in the delivery log.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

import click
import redis.asyncio as aioredis

from watchllm_shared.accounts import AccountStore
from watchllm_shared.accounts.alerts import (
    DEFAULT_ERROR_RATE_MINUTES,
    DEFAULT_ERROR_RATE_PERCENT,
    DEFAULT_THRESHOLDS,
    AlertRule,
    AlertStore,
)
from watchllm_shared.cli.accounts_commands import parse_uuid, run_with_store
from watchllm_shared.cli.cache_commands import _with_redis
from watchllm_shared.cli.settings import CliSettings
from watchllm_shared.contracts.alerts import (
    ALERTS_STREAM,
    DELIVERY_LOG_STREAM,
    Alert,
    AlertFormat,
    AlertKind,
    DeliveryRecord,
    webhook_url_error,
)

KINDS = ", ".join(k.value for k in AlertKind)


def _kinds(ctx: click.Context, param: click.Parameter, value: str) -> tuple[AlertKind, ...]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return tuple(AlertKind(n) for n in names) or _fail(param, ctx, "name at least one kind")
    except ValueError:
        unknown = [n for n in names if n not in {k.value for k in AlertKind}]
        _fail(param, ctx, f"unknown kind {', '.join(unknown)} (kinds: {KINDS})")


def _thresholds(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        _fail(param, ctx, f"{value!r}: whole percentages, comma-separated (50,80,100)")


def _percent(ctx: click.Context, param: click.Parameter, value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        _fail(param, ctx, f"{value!r} is not a number")


def _webhook(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if (error := webhook_url_error(value)) is not None:
        _fail(param, ctx, error)
    return value


def _fail(param: click.Parameter, ctx: click.Context, message: str) -> NoReturn:
    raise click.BadParameter(message, ctx=ctx, param=param)


def describe(rule: AlertRule) -> str:
    scope = rule.project_name or "every project"
    signed = f"signed with ${rule.secret_env}" if rule.secret_env else "unsigned"
    options = []
    if AlertKind.BUDGET in rule.kinds:
        options.append(f"thresholds {','.join(map(str, rule.thresholds))} %")
    if AlertKind.ERROR_RATE in rule.kinds:
        options.append(f"error rate > {rule.error_rate_percent.normalize():f} % for "
                       f"{rule.error_rate_minutes} min")  # fmt: skip
    shown = f"  ({'; '.join(options)})" if options else ""
    kinds = ",".join(k.value for k in rule.kinds)
    return f"{rule.id}  {scope:<20} {kinds:<40} {rule.target} {rule.format.value}, {signed}{shown}"


@click.group()
def alerts() -> None:
    """Webhooks for budgets, error rates, limiter fail-open and dead letters."""


@alerts.command("add")
@click.option("--webhook", required=True, callback=_webhook, metavar="URL",
              help="http(s) URL that receives a POST per alert.")  # fmt: skip
@click.option("--on", "kinds", required=True, callback=_kinds, metavar="KIND[,KIND…]",
              help=f"What to alert on: {KINDS}.")  # fmt: skip
@click.option("--project", default=None, help="Only this project (default: every project).")
@click.option("--secret-env", default=None, metavar="VAR",
              help="Sign deliveries (x-watchllm-signature, HMAC-SHA256) with the secret in the"
              " limiter's environment variable VAR (the secret is never stored).")  # fmt: skip
@click.option("--format", "format_", type=click.Choice([f.value for f in AlertFormat]),
              default=AlertFormat.JSON.value, show_default=True,
              help="json: the alert's fields; slack: {\"text\": …}.")  # fmt: skip
@click.option("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)), show_default=True,
              callback=_thresholds,
              help="Budget percentages, each alerted once per window.")  # fmt: skip
@click.option("--error-rate-percent", default=str(DEFAULT_ERROR_RATE_PERCENT), show_default=True,
              callback=_percent, help="error-rate: alert above this share of errors…")  # fmt: skip
@click.option("--error-rate-minutes", default=DEFAULT_ERROR_RATE_MINUTES, show_default=True,
              type=int, help="…over this many minutes.")  # fmt: skip
@click.pass_obj
def alerts_add(
    settings: CliSettings, webhook: str, kinds: tuple[AlertKind, ...], project: str | None,
    secret_env: str | None, format_: str, thresholds: tuple[int, ...],
    error_rate_percent: Decimal, error_rate_minutes: int,
) -> None:  # fmt: skip
    """Call a webhook on alerts."""

    async def add(store: AccountStore) -> AlertRule:
        return await AlertStore(store.pool, actor=store.actor).add_rule(
            webhook, kinds, project_name=project, secret_env=secret_env,
            format=AlertFormat(format_), thresholds=thresholds,
            error_rate_percent=error_rate_percent, error_rate_minutes=error_rate_minutes,
        )  # fmt: skip

    rule = run_with_store(settings, add)
    click.echo(f"added alert rule {rule.id}: {describe(rule)}")


@alerts.command("list")
@click.option("--project", default=None, help="Only rules that watch this project.")
@click.pass_obj
def alerts_list(settings: CliSettings, project: str | None) -> None:
    """List alert rules (webhooks shown as scheme and host: paths are often secrets)."""
    rules = run_with_store(settings, lambda s: AlertStore(s.pool).list_rules(project))
    for rule in rules:
        click.echo(describe(rule))


@alerts.command("remove")
@click.argument("rule_id")
@click.pass_obj
def alerts_remove(settings: CliSettings, rule_id: str) -> None:
    """Remove alert rule RULE_ID (its alerts still queued are dropped, not sent)."""
    rule_uuid = parse_uuid(rule_id)
    rule = run_with_store(
        settings, lambda s: AlertStore(s.pool, actor=s.actor).remove_rule(rule_uuid)
    )
    click.echo(f"removed alert rule {rule.id} ({rule.target})")


@alerts.command("test")
@click.argument("rule_id")
@click.option("--wait", "wait_seconds", default=10.0, show_default=True, type=float,
              help="Seconds to wait for the first attempt (0: just queue it).")  # fmt: skip
@click.pass_obj
def alerts_test(settings: CliSettings, rule_id: str, wait_seconds: float) -> None:
    """Send a test alert through RULE_ID's webhook (via the limiter, as real alerts go)."""
    rule_uuid = parse_uuid(rule_id)

    async def send(store: AccountStore, redis: aioredis.Redis) -> DeliveryRecord | None:
        rule = await AlertStore(store.pool).get_rule(rule_uuid)
        alert = Alert(
            alert_id=uuid.uuid4(), kind="test", rule_id=rule.id, project_id=rule.project_id,
            text=f"WatchLLM test alert for rule {rule.id}", occurred_at=datetime.now(UTC),
            webhook_url=rule.webhook_url, format=rule.format, secret_env=rule.secret_env,
        )  # fmt: skip
        newest: Any = await redis.xrevrange(DELIVERY_LOG_STREAM, count=1)
        start = newest[0][0] if newest else b"0-0"
        await redis.xadd(ALERTS_STREAM, alert.to_stream_fields())  # type: ignore[arg-type]
        click.echo(f"queued test alert {alert.alert_id} for {rule.target}")
        return await _first_attempt(redis, alert.alert_id, start, wait_seconds)

    record = _with_redis(settings, send)
    if wait_seconds <= 0:
        return
    if record is None:
        raise click.ClickException(
            f"no delivery attempt within {wait_seconds:g} s: is the limiter running?"
            " (the alert stays queued)"
        )
    if not record.delivered:
        status = record.http_status or record.error
        raise click.ClickException(f"the webhook refused it ({status}); the limiter retries")
    click.echo(f"delivered: {record.target} answered {record.http_status}")


async def _first_attempt(
    redis: aioredis.Redis, alert_id: uuid.UUID, after: Any, wait_seconds: float
) -> DeliveryRecord | None:
    deadline = time.monotonic() + wait_seconds
    while (left := deadline - time.monotonic()) > 0:
        reply: Any = await redis.xread({DELIVERY_LOG_STREAM: after}, count=100,
                                       block=max(1, int(min(left, 1.0) * 1000)))  # fmt: skip
        for _, entries in reply or []:
            for entry_id, fields in entries:
                after = entry_id
                record = DeliveryRecord.from_stream_fields(fields)
                if record.alert_id == alert_id:
                    return record
        await asyncio.sleep(0)
    return None
