"""``watchllm loadtest``: an open-loop run against the gateway's chat endpoint.

- Before the clock starts, one preflight request (not counted, over httpx) proves the
  URL and the key, and learns the key's project (``probe.project_of``) and the requests
  its limits leave (``x-ratelimit-remaining-requests``). An unreachable gateway or a
  refusal is a ``DeploymentError``: no run against a deployment that cannot answer.
- Request ``i`` is sent at ``t0 + i / rate`` (``openloop``) through a keep-alive
  ``pool.ConnectionPool`` (``http1``: cheap per request, so the tool keeps its
  schedule when the gateway slows and connections pile up), whatever happened to the
  earlier ones. Its latency runs from the scheduled time to the last byte, so queueing
  anywhere (here, in the pool, in the gateway) counts; ``sent`` minus ``scheduled`` is
  the tool's own send lag.
- Prompts are unique to the run and the request, so every request is a cache miss,
  except the ``repeat_share`` that ask one of ``HOT_PROMPTS`` prompts again (hits once
  the first answer is stored); ``stream_share`` of the requests stream. A seeded RNG
  picks both, so a seed repeats the mix.
- After the last send, answers are awaited up to ``timeout`` seconds; those still
  missing are errors (``timeout`` when sent, ``not_sent`` when they waited for a
  connection). A stream whose body does not end ``data: [DONE]`` is an error
  (``stream_cut``); a connection that failed, ``connect_<error>`` or ``connection_lost``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import UUID

import httpx

from watchllm_shared.cli.deployment import probe
from watchllm_shared.cli.deployment.http1 import Record, Target
from watchllm_shared.cli.deployment.openloop import run_schedule
from watchllm_shared.cli.deployment.pool import ConnectionPool
from watchllm_shared.cli.deployment.probe import CHAT_PATH, DeploymentError

HOT_PROMPTS = 10
CAPTURE = (b"x-request-id", b"x-watchllm-cache")
_DONE = b"data: [DONE]"


@dataclass(frozen=True)
class LoadOptions:
    url: str  # the gateway's root URL (``commands.gateway_base``)
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request of the run: its ``Record`` (times, status, captured headers)."""

    record: Record
    stream: bool

    @property
    def kind(self) -> str:
        """``ok``, ``http_<status>``, or what went wrong."""
        record = self.record
        if record.error is not None:
            return record.error
        if record.done is None:
            return "not_sent" if record.sent is None else "timeout"
        if record.status != 200:
            return f"http_{record.status}"
        if self.stream and not record.tail.rstrip().endswith(_DONE):
            return "stream_cut"
        return "ok"

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def cache(self) -> str:
        return self.record.headers.get(b"x-watchllm-cache", b"").decode("latin-1")

    @property
    def request_id(self) -> str:
        return self.record.headers.get(b"x-request-id", b"").decode("latin-1")


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


def chat_target(url: str, key: str) -> Target:
    """The chat endpoint behind the gateway's root ``url`` (http or https)."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return Target(parts.hostname or "", parts.port or (443 if tls else 80),
                  parts.path.rstrip("/") + CHAT_PATH, headers=headers, tls=tls)  # fmt: skip


async def run_load(
    options: LoadOptions, first: Preflight, on_done: Callable[[Record], None]
) -> LoadRun:
    """The whole run, after ``preflight`` answered; ``on_done`` is called as each
    request finishes (progress)."""
    target = chat_target(options.url, options.key)
    pool = ConnectionPool(target, options.max_connections, capture=CAPTURE)
    run = LoadRun(options, first)
    tag, rng = probe.new_tag(), random.Random(options.seed)

    def fire(index: int, scheduled: float) -> None:
        stream = rng.random() < options.stream_share
        hot = rng.random() < options.repeat_share
        prompt = f"loadtest {tag} " + (
            f"hot {rng.randrange(HOT_PROMPTS)}" if hot else f"request {index}"
        )
        payload = target.request(probe.chat_body(options.model, prompt, stream))
        record = Record(scheduled, on_done, payload)
        run.outcomes.append(Outcome(record, stream))
        pool.submit(record)

    try:
        await pool.warm(min(8, options.total))
        run.started_at = datetime.now(UTC)
        run.t0 = time.perf_counter() + 0.01
        await run_schedule(run.t0, options.rate, options.total, fire)
        await pool.wait_idle(options.timeout)
    finally:
        run.ended_at = datetime.now(UTC)
        await pool.close()  # what is still unanswered ends as timeout or not_sent
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
