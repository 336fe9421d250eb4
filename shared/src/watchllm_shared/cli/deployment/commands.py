"""``watchllm check`` and ``watchllm loadtest``: options, output and exit codes.

Exit codes: 0 when everything passed; 1 when a check failed, a load test had errors or
found fewer requests recorded than answered, or the run could not start (an unreachable
gateway, a refused key: one ``Error:`` line); 2 for bad options (click's usage error).
Results go to stdout (``--json``: one object); progress and warnings to stderr
(``console``, imported only when a command runs: this module is imported by every
``watchllm`` command, so it stays light).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import click

from watchllm_shared.cli.settings import CliSettings


def http_url(url: str) -> str:
    """``url`` without a trailing slash; ValueError unless it is http(s)://host…"""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return url.strip().rstrip("/")


def gateway_base(url: str) -> str:
    """The gateway's root URL; accepts the OpenAI base URL (``…/v1``) too."""
    return http_url(url).removesuffix("/v1")


def metrics_beside(url: str, port: int) -> str:
    """The metrics listener of the gateway at ``url``: the same scheme and host, ``port``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class _HttpUrl(click.ParamType[str]):
    name = "URL"

    def __init__(self, gateway: bool = False, suffix: str = "") -> None:
        self._gateway = gateway
        self._suffix = suffix  # dropped when given: the root URL is kept

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import httpx  # here, not at the top: every `watchllm` command imports this module

        try:
            url = gateway_base(str(value)) if self._gateway else http_url(str(value))
            url = url.removesuffix(self._suffix) if self._suffix else url
            httpx.URL(url)
        except (ValueError, httpx.InvalidURL) as exc:
            self.fail(str(exc), param, ctx)
        return url


class _Uuid(click.ParamType[UUID]):
    name = "UUID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> UUID:
        try:
            return value if isinstance(value, UUID) else UUID(str(value))
        except ValueError:
            self.fail(
                f"{value!r} is not a project id (a UUID; `watchllm projects list`)", param, ctx
            )


class _Number(click.ParamType[float]):
    """A float within bounds, with messages that say which."""

    name = "NUMBER"

    def __init__(self, low: float, high: float | None = None, low_open: bool = False) -> None:
        self._low, self._high, self._low_open = low, high, low_open

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        too_low = number <= self._low if self._low_open else number < self._low
        if too_low or (self._high is not None and number > self._high):
            bounds = f"more than {self._low:g}" if self._low_open else f"at least {self._low:g}"
            if self._high is not None:
                bounds = f"from {self._low:g} to {self._high:g}"
            self.fail(f"{value!r} is out of range: it must be {bounds}", param, ctx)
        return number


def _settings(ctx: click.Context) -> CliSettings:
    """The ``watchllm`` group's settings (read once), or the environment's."""
    return ctx.find_object(CliSettings) or CliSettings()


def _analytics_token(
    ctx: click.Context, given: str | None, analytics_url: str | None
) -> str | None:
    """``--analytics-token``, else the environment's or the local ``up``'s (only when
    analytics is read at all)."""
    from watchllm_shared.cli.local_secrets import SecretFileError

    if given or analytics_url is None:
        return given
    try:
        return _settings(ctx).analytics_token()
    except SecretFileError as exc:
        raise click.ClickException(str(exc)) from exc


_POSITIVE = _Number(0, low_open=True)
_SHARE = _Number(0, 1)


def _common(command: Any) -> Any:
    """The options both commands share."""
    options = [
        click.option("--url", required=True, type=_HttpUrl(gateway=True),
                     help="The gateway, e.g. http://127.0.0.1:8080 (or its OpenAI base URL)."),
        click.option("--key", required=True, help="A WatchLLM key (lgw_…) of the project to test."),
        click.option("--model", default="gpt-4o-mini", show_default=True,
                     help="A model the gateway routes and the key's project may use."),
        click.option("--analytics-url", type=_HttpUrl(), default=None,
                     help="The analytics service (e.g. http://127.0.0.1:8092): also check that"
                     " requests were stored."),
        click.option("--analytics-token", default=None,
                     help="Its WATCHLLM_ANALYTICS_QUERY_TOKEN. Default: that variable, else"
                     " the token a `watchllm up` keeps in this folder's data directory."),
        click.option("--project-id", type=_Uuid(), default=None,
                     help="The key's project; only needed for analytics when the project's"
                     " cache is off (the answers then do not name it)."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@click.command("check")
@_common
@click.option("--metrics-url", type=_HttpUrl(suffix="/metrics"), default=None,
              help="The gateway's metrics listener (/metrics is not on its API port)."
              " Default: --url's host on WATCHLLM_GATEWAY_METRICS_PORT (9180).")  # fmt: skip
@click.pass_context
def check(ctx: click.Context, url: str, key: str, model: str, analytics_url: str | None,
          analytics_token: str | None, project_id: UUID | None, as_json: bool,
          metrics_url: str | None) -> None:  # fmt: skip
    """Sanity-check a running deployment in ≤ 30 s: health, a chat request, a stream,
    the exact cache, rate-limit headers, /metrics, and (with --analytics-url) that the
    request was stored. One line per check; exits 0 only when all pass."""
    from watchllm_shared.cli.deployment import console
    from watchllm_shared.cli.deployment.check import CheckOptions

    settings = _settings(ctx)
    metrics_url = metrics_url or metrics_beside(url, settings.gateway_metrics_port)
    token = _analytics_token(ctx, analytics_token, analytics_url)
    options = CheckOptions(url, key, model, analytics_url, token, project_id,
                           metrics_url=metrics_url)  # fmt: skip
    ctx.exit(console.check(options, as_json))


@click.command("loadtest")
@_common
@click.option("--rate", type=_POSITIVE, default=100.0,
              show_default=True, help="Requests per second (open loop: sent on schedule,"
              " whatever the answers do).")  # fmt: skip
@click.option("--duration", type=_POSITIVE, default=60.0,
              show_default=True, help="Seconds.")  # fmt: skip
@click.option("--stream-share", type=_SHARE, default=0.0, show_default=True,
              help="Share of the requests that stream.")  # fmt: skip
@click.option("--repeat-share", type=_SHARE, default=0.0, show_default=True,
              help="Share asking one of 10 prompts again (cache hits).")  # fmt: skip
@click.option("--timeout", type=_POSITIVE, default=30.0,
              show_default=True, help="Seconds to wait for an answer.")  # fmt: skip
@click.option("--max-connections", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--seed", type=int, default=None, help="Repeat the same mix of requests.")
@click.pass_context
def loadtest(ctx: click.Context, url: str, key: str, model: str, analytics_url: str | None,
             analytics_token: str | None, project_id: UUID | None, as_json: bool, rate: float,
             duration: float, stream_share: float, repeat_share: float, timeout: float,
             max_connections: int, seed: int | None) -> None:  # fmt: skip
    """Send RATE requests a second for DURATION seconds (default 6,000 in a minute), open
    loop, and report the achieved rate, p50/p90/p99 latency, errors by status, cache hits
    and (with --analytics-url) how many answered requests analytics recorded. Exits 0
    only with no errors and every answered request recorded."""
    from watchllm_shared.cli.deployment import console
    from watchllm_shared.cli.deployment.loadtest import LoadOptions

    options = LoadOptions(url, key, model, rate, duration, stream_share, repeat_share,
                          timeout, max_connections, seed)  # fmt: skip
    token = _analytics_token(ctx, analytics_token, analytics_url)
    ctx.exit(console.loadtest(options, analytics_url, token, project_id, as_json))
