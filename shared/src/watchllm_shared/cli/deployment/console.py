"""What ``watchllm check`` and ``watchllm loadtest`` print, and a load test driven from
a terminal: the preflight, a progress bar and warnings on stderr, the run, reading
analytics back, the report on stdout. Each returns the command's exit code.

Imported only when one of the commands runs (``commands`` keeps ``watchllm``'s start
light).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any
from uuid import UUID

import click
import httpx
import orjson

from watchllm_shared.cli.deployment import probe
from watchllm_shared.cli.deployment.analytics import AnalyticsReader, Recorded
from watchllm_shared.cli.deployment.check import CheckOptions, CheckResult, run_checks
from watchllm_shared.cli.deployment.loadreport import LoadReport, lines, summarise
from watchllm_shared.cli.deployment.loadtest import (
    LoadOptions,
    LoadRun,
    Preflight,
    preflight,
    run_load,
)
from watchllm_shared.cli.deployment.probe import DeploymentError

READ_BACK_SECONDS = 60.0


def check(options: CheckOptions, as_json: bool) -> int:
    results = asyncio.run(run_checks(options))
    failed = [r for r in results if r.status == "fail"]
    if as_json:
        checks = [r.__dict__ for r in results]
        _echo_json({"ok": not failed, "url": options.url, "checks": checks})
    else:
        for result in results:
            click.echo(_check_line(result))
        click.echo(f"check: {len(failed)} of {len(results)} failed" if failed
                   else f"check: all passed ({options.url})")  # fmt: skip
    return 1 if failed else 0


def _check_line(result: CheckResult) -> str:
    line = f"{result.status.upper():4}  {result.name:<11} {result.detail}"
    return f"{line} — {result.hint}" if result.hint else line


def loadtest(options: LoadOptions, analytics_url: str | None, analytics_token: str | None,
             project_id: UUID | None, as_json: bool) -> int:  # fmt: skip
    try:
        with asyncio.Runner(loop_factory=_fast_loop()) as runner:
            report = runner.run(_loadtest(options, analytics_url, analytics_token, project_id))
    except DeploymentError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        _echo_json(report.as_dict())
    else:
        for line in lines(report):
            click.echo(line)
    return 0 if report.passed else 1


async def _loadtest(options: LoadOptions, analytics_url: str | None, token: str | None,
                    project_id: UUID | None) -> LoadReport:  # fmt: skip
    async with probe.client(options.url, options.key, options.timeout) as http:
        first = await preflight(http, options.model)
    project = project_id or first.project_id
    if analytics_url and project is None:
        raise DeploymentError(
            "cannot tell the key's project to read analytics (its cache is off, so the"
            " answers carry no x-watchllm-cache-key): pass --project-id"
        )
    _warn_quota(first, options.total)
    step = max(1, options.total // 200)
    with click.progressbar(length=options.total, label="loadtest", file=sys.stderr,
                           update_min_steps=step) as bar:  # fmt: skip
        run = await run_load(options, first, lambda _: bar.update(1))
    recorded = None
    if analytics_url and project is not None:
        recorded = await _read_back(run, analytics_url, token, project)
    return summarise(run, recorded)


async def _read_back(run: LoadRun, url: str, token: str | None, project: UUID) -> Recorded:
    ids = [o.request_id for o in run.outcomes if o.ok]
    click.echo(f"reading {len(ids)} requests back from analytics …", err=True)
    async with httpx.AsyncClient(timeout=10.0) as http:
        reader = AnalyticsReader(http, url, token)
        return await reader.recorded(project, ids, run.started_at, run.ended_at,
                                     READ_BACK_SECONDS)  # fmt: skip


def _fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (``uvicorn[standard]`` brings it): less CPU per request, so
    the tool keeps its schedule at higher rates."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _warn_quota(first: Preflight, total: int) -> None:
    left = first.remaining_requests
    if left is not None and left < total:
        click.echo(
            f"warning: the key's project may send {left} more requests now"
            f" (x-ratelimit-remaining-requests); this run sends {total}: expect http_429"
            " (watchllm projects set-plan NAME PRO raises the daily quota)",
            err=True,
        )


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
