"""``watchllm loadtest``: an open-loop run against the gateway's chat endpoint.

- Before the clock starts, one preflight request (not counted) proves the URL and the
  key, and learns the key's project (``probe.project_of``) and the requests its limits
  leave (``x-ratelimit-remaining-requests``). An unreachable gateway or a refusal is a
  ``DeploymentError``: no run against a deployment that cannot answer.
- Request ``i`` is sent at ``t0 + i / rate`` (``openloop``), each as a task on one
  keep-alive ``httpx`` client, whatever happened to the earlier ones; its latency runs
  from the scheduled time to the last byte, so queueing anywhere (here, in the pool, in
  the gateway) counts. ``sent`` is when the task began: the send lag is the tool's own.
- Prompts are unique to the run and the request, so every request is a cache miss,
  except the ``repeat_share`` that ask one of ``HOT_PROMPTS`` prompts again (hits once
  the first answer is stored); ``stream_share`` of the requests stream. A seeded RNG
  picks both, so a seed repeats the mix.
- After the last send, answers are awaited up to ``timeout`` seconds; those missing
  then are errors (``timeout``). A stream whose body does not end ``data: [DONE]`` is
  an error (``stream_cut``).

httpx costs some hundred microseconds of CPU per request: plenty for hundreds of
requests a second; the benchmarks' client (``tests/bench/http1``) goes further.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import httpx

from watchllm_shared.cli.deployment import probe
from watchllm_shared.cli.deployment.openloop import run_schedule
from watchllm_shared.cli.deployment.probe import CHAT_PATH, DeploymentError

HOT_PROMPTS = 10
_DONE = b"data: [DONE]"


@dataclass(frozen=True)
class LoadOptions:
    url: str  # the gateway's root URL (``probe.gateway_base``)
    key: str
    model: str = "gpt-4o-mini"
    rate: float = 100.0
    duration: float = 60.0
    stream_share: float = 0.0
    repeat_share: float = 0.0
    timeout: float = 30.0
    max_connections: int = 256
    seed: int | None = None

    @property
    def total(self) -> int:
        return max(1, round(self.rate * self.duration))


@dataclass(slots=True)
class Outcome:
    scheduled: float  # time.perf_counter()
    stream: bool
    sent: float | None = None
    done: float | None = None
    status: int = 0
    error: str | None = None  # None: an HTTP answer arrived whole
    cache: str = ""
    request_id: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.done is not None

    @property
    def kind(self) -> str:
        """``ok``, ``http_<status>``, or the error's name."""
        if self.ok:
            return "ok"
        return self.error or ("not_sent" if self.sent is None else f"http_{self.status}")


@dataclass(frozen=True)
class Preflight:
    project_id: UUID | None
    remaining_requests: int | None


@dataclass
class LoadRun:
    options: LoadOptions
    preflight: Preflight
    t0: float = 0.0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    outcomes: list[Outcome] = field(default_factory=list)


async def run_load(
    http: httpx.AsyncClient,
    options: LoadOptions,
    first: Preflight,
    on_done: Callable[[Outcome], None],
) -> LoadRun:
    """The whole run on ``http`` (``probe.client``) after ``preflight`` answered;
    ``on_done`` is called as each request finishes (progress)."""
    run = LoadRun(options, first)
    tag, rng = probe.new_tag(), random.Random(options.seed)
    tasks: set[asyncio.Task[None]] = set()

    def fire(index: int, scheduled: float) -> None:
        outcome = Outcome(scheduled, rng.random() < options.stream_share)
        hot = rng.random() < options.repeat_share
        prompt = f"loadtest {tag} " + (
            f"hot {rng.randrange(HOT_PROMPTS)}" if hot else f"request {index}"
        )
        body = probe.chat_body(options.model, prompt, outcome.stream)
        run.outcomes.append(outcome)
        task = asyncio.create_task(_send(http, outcome, body, on_done))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    run.started_at = datetime.now(UTC)
    run.t0 = time.perf_counter() + 0.01
    await run_schedule(run.t0, options.rate, options.total, fire)
    await _drain(tasks, options.timeout)
    run.ended_at = datetime.now(UTC)
    return run


async def preflight(http: httpx.AsyncClient, model: str) -> Preflight:
    """One request before the run (not counted); raises ``DeploymentError`` when the
    gateway cannot be reached or refuses it."""
    body = probe.chat_body(model, f"loadtest {probe.new_tag()} preflight")
    try:
        response = await http.post(CHAT_PATH, content=body)
    except httpx.HTTPError as exc:
        raise DeploymentError(
            f"{probe.unreachable(exc, str(http.base_url))}: is the gateway running, and is"
            " --url its address?"
        ) from exc
    if response.status_code != 200:
        raise DeploymentError(
            f"the gateway refused the first request ({probe.refusal(response)}):"
            f" {probe.refusal_hint(response.status_code)}"
        )
    remaining = response.headers.get("x-ratelimit-remaining-requests", "")
    return Preflight(probe.project_of(response), int(remaining) if remaining.isdigit() else None)


async def _send(
    http: httpx.AsyncClient, outcome: Outcome, body: bytes, on_done: Callable[[Outcome], None]
) -> None:
    outcome.sent = time.perf_counter()
    try:
        async with http.stream("POST", CHAT_PATH, content=body) as response:
            outcome.status = response.status_code
            outcome.cache = response.headers.get("x-watchllm-cache", "")
            outcome.request_id = response.headers.get("x-request-id", "")
            tail = b""
            async for chunk in response.aiter_bytes():
                tail = (tail + chunk)[-64:]
        outcome.done = time.perf_counter()
        if outcome.stream and outcome.status == 200 and not tail.rstrip().endswith(_DONE):
            outcome.error = "stream_cut"
    except httpx.TimeoutException:
        outcome.error = "timeout"
    except httpx.ConnectError:
        outcome.error = "connect_error"
    except httpx.HTTPError as exc:
        outcome.error = type(exc).__name__
    except asyncio.CancelledError:  # still unanswered when the drain ended
        outcome.error = "timeout"
        raise
    finally:
        on_done(outcome)


async def _drain(tasks: set[asyncio.Task[None]], within: float) -> None:
    """Wait up to ``within`` seconds for the answers still outstanding, then give up on
    them (their outcomes say ``timeout``)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=within)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
