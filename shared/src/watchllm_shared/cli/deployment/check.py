"""``watchllm check``: a quick sanity check of a running deployment (≤ 30 s).

In order, each a ``CheckResult`` (pass, fail with what to do, or skip):

- health: ``GET /health`` says ``healthy``; otherwise the services that are not
  ``up``/``connected`` are named.
- chat: one ``POST /v1/chat/completions`` in the OpenAI shape, with a prompt unique to
  this run (so it is a cache miss), answered with a chat completion.
- rate limits: that answer carries the ``x-ratelimit-*-requests`` headers.
- stream: the same endpoint with ``stream: true`` (another unique prompt) answers SSE
  ending ``data: [DONE]``.
- cache: the first request sent again is answered from the exact cache
  (``x-watchllm-cache: hit``, same content). The cache service stores answers after
  they were sent, so it is asked again (backing off) for up to ``CACHE_WAIT`` seconds.
  ``bypass`` on the first answer means the cache is off for the key's project (or the
  gateway): reported, and not a failure.
- metrics: ``GET /metrics`` on the gateway's metrics listener (its own port, apart from
  the API: ``metrics_url``) exposes the gateway's four core metrics.
- analytics (with an analytics URL): the first request is found in the request log by
  its ``x-request-id`` within ``ANALYTICS_WAIT`` seconds.

Everything shares one time budget (``budget_seconds``). An unreachable gateway or a
refused key skips what depends on them, so the output shows the cause once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

import httpx
import orjson

from watchllm_shared.cli.deployment import probe
from watchllm_shared.cli.deployment.analytics import AnalyticsReader
from watchllm_shared.cli.deployment.probe import CHAT_PATH, DeploymentError

CACHE_WAIT = 10.0
ANALYTICS_WAIT = 15.0
REQUIRED_METRICS = (
    "watchllm_requests_total",
    "watchllm_cache_hits_total",
    "watchllm_cache_misses_total",
    "watchllm_latency_seconds_bucket",
)
_OK_SERVICE_STATES = ("up", "connected")
# What to do, per failure.
_NOT_GATEWAY = "is --url the WatchLLM gateway? see its log"
_HEALTH_HINT = (
    "see README 'Troubleshooting' and the logs of the services named (embedded: .watchllm/logs)"
)
_LIMITER_HINT = (
    "the limiter is off (WATCHLLM_LIMITER_ENABLED) or failing open: see /health"
    " (limiter) and watchllm_limiter_unavailable_total in /metrics"
)
_STREAM_HINT = "a proxy in front of the gateway may buffer or cut streams; see the gateway's log"
_CACHE_HINT = (
    "the cache service stores answers after they are sent: it is stopped or behind"
    " (/health: cache; its lag: XINFO GROUPS watchllm.cache.stores.v1; its log)"
)
_FLUSH_HINT = "flush the project's cache: watchllm cache flush --project NAME"
_METRICS_HINT = (
    "the gateway serves /metrics on its metrics port (WATCHLLM_GATEWAY_METRICS_PORT, 9180 by"
    " default), not on its API port: pass --metrics-url"
)
_ANALYTICS_HINT = "see the analytics service's /health (consumer lag, dead letters) and its log"

Status = Literal["pass", "fail", "skip"]
_Outcome = tuple[Status, str, str]  # status, detail, what to do
_Step = Callable[[], Awaitable[_Outcome]]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    hint: str = ""  # what to do, on a failure


@dataclass(frozen=True)
class CheckOptions:
    url: str  # the gateway's root URL (``probe.gateway_base``)
    key: str
    model: str = "gpt-4o-mini"
    analytics_url: str | None = None
    analytics_token: str | None = None
    project_id: UUID | None = None  # else learnt from the answers' cache key
    budget_seconds: float = 30.0
    metrics_url: str | None = None  # the gateway's metrics listener; None: not checked


@dataclass
class _State:
    """What later checks need from earlier ones."""

    tag: str = field(default_factory=probe.new_tag)
    fatal: str | None = None  # set when nothing further can pass
    first: httpx.Response | None = None
    first_text: str | None = None
    sent_at: datetime | None = None


async def run_checks(options: CheckOptions) -> list[CheckResult]:
    async with probe.client(options.url, options.key, options.budget_seconds) as http:
        return await _Checker(options, http).run()


class _Checker:
    def __init__(self, options: CheckOptions, http: httpx.AsyncClient) -> None:
        self._options = options
        self._http = http
        self._state = _State()
        self._deadline = time.monotonic() + options.budget_seconds
        self._body = probe.chat_body(options.model, self._prompt("reply with one word"))

    def _prompt(self, words: str) -> str:
        return f"watchllm check {self._state.tag}: {words}."

    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    async def run(self) -> list[CheckResult]:
        steps = (("health", self._health), ("chat", self._chat),
                 ("rate limits", self._rate_limits), ("stream", self._stream),
                 ("cache", self._cache), ("metrics", self._metrics),
                 ("analytics", self._analytics))  # fmt: skip
        return [await self._run_one(name, step) for name, step in steps]

    async def _run_one(self, name: str, step: _Step) -> CheckResult:
        if self._state.fatal is not None:
            return CheckResult(name, "skip", f"not run: {self._state.fatal}")
        budget = self._options.budget_seconds
        if self._remaining() <= 0:
            spent = f"not run: the check's {budget:g} s were spent"
            return CheckResult(name, "fail", spent, "the deployment answers too slowly")
        try:
            async with asyncio.timeout(self._remaining()):
                status, detail, hint = await step()
        except TimeoutError:
            status, detail = "fail", f"no answer within the check's {budget:g} s"
            hint = "the deployment answers too slowly: see the gateway's log"
        except httpx.HTTPError as exc:  # no HTTP answer at all from the gateway
            self._state.fatal = "the gateway did not answer"
            status, detail = "fail", probe.unreachable(exc, self._options.url)
            hint = "is the gateway running, and is --url its address?"
        except DeploymentError as exc:
            status, detail, hint = "fail", str(exc), ""
        return CheckResult(name, status, detail, hint)

    async def _health(self) -> _Outcome:
        response = await self._http.get("/health")
        try:
            report = orjson.loads(response.content)
            overall, services = report["status"], report.get("services", {})
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise DeploymentError(
                f"/health answered HTTP {response.status_code} without a health report;"
                " is --url the WatchLLM gateway?"
            ) from exc
        if overall == "healthy":
            return _pass("healthy")
        bad = ", ".join(f"{k}: {v}" for k, v in services.items() if v not in _OK_SERVICE_STATES)
        return _fail(f"{overall} ({bad or 'no detail'})", _HEALTH_HINT)

    async def _chat(self) -> _Outcome:
        state = self._state
        state.sent_at = datetime.now(UTC)
        started = time.perf_counter()
        response = await self._http.post(CHAT_PATH, content=self._body)
        took = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            if probe.refused_key(response.status_code):
                state.fatal = "the key was refused"
            return _refused(response)
        state.first_text = probe.answer_text(response)
        if state.first_text is None:
            return _fail("the answer is not an OpenAI chat completion", _NOT_GATEWAY)
        state.first = response
        headers = response.headers
        return _pass(f"answered in {took:.0f} ms (x-request-id {headers.get('x-request-id')},"
                     f" x-watchllm-cache: {headers.get('x-watchllm-cache')})")  # fmt: skip

    async def _rate_limits(self) -> _Outcome:
        first = self._state.first
        if first is None:
            return _skip("not run: no chat answer to read")
        missing = [h for h in probe.RATE_LIMIT_HEADERS if h not in first.headers]
        if missing:
            return _fail(f"the answer lacks {', '.join(missing)}", _LIMITER_HINT)
        limit, left, reset = (first.headers[h] for h in probe.RATE_LIMIT_HEADERS)
        return _pass(f"limit {limit}, remaining {left}, reset in {reset}")

    async def _stream(self) -> _Outcome:
        body = probe.chat_body(self._options.model, self._prompt("stream one word"), stream=True)
        async with self._http.stream("POST", CHAT_PATH, content=body) as response:
            if response.status_code != 200:
                await response.aread()
                return _refused(response)
            kind = response.headers.get("content-type", "")
            data = [line[5:].strip() async for line in response.aiter_lines()
                    if line.startswith("data:")]  # fmt: skip
        if not kind.startswith("text/event-stream"):
            return _fail(f"content-type {kind!r}, not text/event-stream", _STREAM_HINT)
        if not data or data[-1] != "[DONE]":
            last = data[-1][:60] if data else "nothing"
            return _fail(f"{len(data)} events, the last is {last!r}, not [DONE]", _STREAM_HINT)
        return _pass(f"{len(data)} events, ending data: [DONE]")

    async def _cache(self) -> _Outcome:
        first = self._state.first
        if first is None:
            return _skip("not run: no chat answer to repeat")
        outcome = first.headers.get("x-watchllm-cache")
        if outcome == "bypass":
            return _pass("disabled for the key's project or the gateway (x-watchllm-cache:"
                         " bypass): not checked")  # fmt: skip
        if outcome != "miss":
            return _fail(f"the first answer said x-watchllm-cache: {outcome}", _NOT_GATEWAY)
        started, tries, pause = time.monotonic(), 0, 0.1
        limit = min(CACHE_WAIT, self._remaining() - 1)
        while True:
            again = await self._http.post(CHAT_PATH, content=self._body)
            tries, waited = tries + 1, time.monotonic() - started
            if again.status_code != 200:
                return _refused(again)
            outcome = again.headers.get("x-watchllm-cache")
            if outcome == "hit" and probe.answer_text(again) != self._state.first_text:
                return _fail("a hit answered other content than the first answer", _FLUSH_HINT)
            if outcome == "hit":
                return _pass(f"the same request again: hit after {waited:.1f} s")
            if waited + pause > limit:
                return _fail(f"the same request was still a {outcome} after {waited:.1f} s"
                             f" ({tries} tries)", _CACHE_HINT)  # fmt: skip
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _metrics(self) -> _Outcome:
        if self._options.metrics_url is None:
            return _skip("not checked: no --metrics-url")
        url = f"{self._options.metrics_url}/metrics"
        try:  # another port than the gateway's: its failure is not the gateway's
            async with httpx.AsyncClient(timeout=min(5.0, self._remaining())) as http:
                response = await http.get(url)
        except httpx.HTTPError as exc:
            return _fail(probe.unreachable(exc, url), _METRICS_HINT)
        if response.status_code != 200:
            return _fail(f"{url} answered HTTP {response.status_code}", _METRICS_HINT)
        missing = [m for m in REQUIRED_METRICS if not exposes(response.text, m)]
        if missing:
            return _fail(f"{url} lacks {', '.join(missing)}", _METRICS_HINT)
        return _pass(f"exposes {', '.join(REQUIRED_METRICS)}")

    async def _analytics(self) -> _Outcome:
        options, first, sent_at = self._options, self._state.first, self._state.sent_at
        if options.analytics_url is None:
            return _skip("not checked: no --analytics-url")
        if first is None or sent_at is None:
            return _skip("not run: no chat answer to look up")
        project = options.project_id or probe.project_of(first)
        if project is None:
            return _fail("cannot tell the key's project: its cache is off, so answers carry"
                         " no x-watchllm-cache-key", "pass --project-id")  # fmt: skip
        request_id = first.headers.get("x-request-id", "")
        within = max(0.0, min(ANALYTICS_WAIT, self._remaining() - 1))
        async with httpx.AsyncClient(timeout=min(5.0, self._remaining())) as http:
            reader = AnalyticsReader(http, options.analytics_url, options.analytics_token)
            took = await reader.request_stored(project, request_id, sent_at, within)
        if took is None:
            return _fail(f"request {request_id} not stored after {within:.0f} s", _ANALYTICS_HINT)
        return _pass(f"request {request_id} stored, found after {took:.1f} s")


def _pass(detail: str) -> _Outcome:
    return "pass", detail, ""


def _fail(detail: str, hint: str) -> _Outcome:
    return "fail", detail, hint


def _skip(detail: str) -> _Outcome:
    return "skip", detail, ""


def _refused(response: httpx.Response) -> _Outcome:
    return _fail(probe.refusal(response), probe.refusal_hint(response.status_code))


def exposes(text: str, metric: str) -> bool:
    """True when Prometheus ``text`` has a sample of ``metric`` or declares it (a
    labelled counter has no sample until its first increment). A counter's TYPE line
    names it with or without ``_total``, depending on the client library's version."""
    family = metric.removesuffix("_total").removesuffix("_bucket")
    prefixes = (f"{metric}{{", f"{metric} ", f"# TYPE {family} ", f"# TYPE {metric} ")
    return any(line.startswith(prefixes) for line in text.splitlines())
