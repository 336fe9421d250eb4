"""The fault matrix: faults injected into a running ``watchllm up`` under load, and what
each one cost (``make fault-matrix``; report in ``tests/bench/results/fault-matrix-latest.md``).

Per scenario: a project of its own, an open-loop load (``watchllm loadtest``'s engine,
default 8,000 requests at 200 req/s), the fault injected ``--fault-at`` seconds in, then:

- answered: requests that got a 200; caller errors: the others, by kind;
- lost: answered requests analytics never stored; duplicated: stored more than once;
  extra: stored requests whose answer the caller never read (a stop cut them off);
- time to healthy: from the fault until ``/health`` says ``healthy`` again.

The service kills and store pauses share one stack; a signal to ``up``'s process
group stops the stack, which is then started again on the same data (analytics stores
what waited in Redis) before counting.

    python -m tests.bench.fault_matrix [--rate 200] [--duration 40] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.support.embedded_stack import EmbeddedStack, embedded_stack, stack_env, start_up
from watchllm_shared.cli.deployment import probe
from watchllm_shared.cli.deployment.loadtest import LoadOptions, preflight, run_load
from watchllm_shared.cli.embedded_os import server_processes

RESULTS = Path(__file__).with_name("results")
_HEALTHY_WITHIN = 120.0


@dataclass
class Result:
    scenario: str
    answered: int = 0
    caller_errors: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0
    extra: int = 0
    time_to_healthy_s: float | None = None
    note: str = ""


_STOP_EXPECTED = "0 lost, 0 duplicated; callers see errors once the gateway stopped"


@dataclass(frozen=True)
class Scenario:
    name: str
    inject: Callable[[EmbeddedStack], None]
    stops_stack: bool = False
    expectation: str = "0 lost, 0 duplicated, no caller errors"
    # A killed service is back when it answers here again (port variable, path).
    ready: tuple[str, str] | None = None


def _kill(module: str) -> Callable[[EmbeddedStack], None]:
    def inject(stack: EmbeddedStack) -> None:
        killed = stack.service_pids(module)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        # Back means a new process (the old one's socket may answer for a moment).
        deadline = time.monotonic() + _HEALTHY_WITHIN
        while not set(stack.service_pids(module)) - set(killed):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    return inject


def _pause(executable: str, folder: str, seconds: float = 5.0) -> Callable[[EmbeddedStack], None]:
    def inject(stack: EmbeddedStack) -> None:
        pids = server_processes(executable, (stack.data_dir / folder).resolve())
        assert pids, f"no {executable} in {folder}"
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    return inject


def _group_signal(signum: signal.Signals) -> Callable[[EmbeddedStack], None]:
    def inject(stack: EmbeddedStack) -> None:
        os.killpg(stack.process.pid, signum)
        stack.process.wait(timeout=120)

    return inject


SCENARIOS = [
    Scenario("SIGKILL analytics", _kill("watchllm_analytics")),
    Scenario("SIGKILL limiter", _kill("watchllm_limiter")),
    Scenario("SIGKILL cache", _kill("watchllm_cache")),
    Scenario("SIGKILL dashboard", _kill("watchllm_dashboard")),
    Scenario(
        "SIGKILL gateway",
        _kill("watchllm_gateway"),
        expectation="callers see connection errors until it is back; lost ≤ the "
        "requests answered in the last milliseconds before the kill",
    ),  # fmt: skip
    Scenario("SIGSTOP Valkey 5 s", _pause("valkey-server", "redis")),
    Scenario("SIGSTOP Postgres 5 s", _pause("postgres", "postgres/pgdata")),
    Scenario(
        "SIGINT to up's process group",
        _group_signal(signal.SIGINT),
        stops_stack=True,
        expectation="0 lost, 0 duplicated; callers see errors once the gateway stopped",
    ),  # fmt: skip
    Scenario(
        "SIGTERM to up's process group",
        _group_signal(signal.SIGTERM),
        stops_stack=True,
        expectation="0 lost, 0 duplicated; callers see errors once the gateway stopped",
    ),  # fmt: skip
]


def _time_to_healthy(stack: EmbeddedStack, scenario: Scenario, since: float) -> float | None:
    """Seconds until the killed service answers again (its new process: ``inject``
    returns once it exists) and ``/health`` says healthy. (A heartbeat outlives its
    process by up to 15 s, so ``/health`` alone would call a stack healthy while the
    killed service is still starting.)"""
    deadline = since + _HEALTHY_WITHIN
    back = scenario.ready is None
    while time.monotonic() < deadline:
        try:
            if not back and scenario.ready is not None:
                port, path = scenario.ready
                url = f"http://127.0.0.1:{stack.env[port]}{path}"
                back = httpx.get(url, timeout=5).status_code == 200
            elif httpx.get(f"{stack.gateway_url}/health", timeout=5).json()["status"] == "healthy":
                return time.monotonic() - since
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    return None


def _count(stack: EmbeddedStack, project_id: str, start: datetime) -> int:
    params = {"project_id": project_id, "start": start.isoformat(),
              "end": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}  # fmt: skip
    answer = httpx.post(f"{stack.analytics_url}/v1/queries/project_request_log_count",
                        json=params, headers=stack.analytics_auth, timeout=60).json()  # fmt: skip
    return int(answer["rows"][0][0])


def _settle(stack: EmbeddedStack, project_id: str, start: datetime, answered: set[str],
            within: float = 120.0) -> Counter[str]:  # fmt: skip
    """The stored ids once ingestion is over: every answered one is there (or no
    progress for ``within`` seconds) and the row count held still for 3 s. Paging while
    rows still arrive would shift the pages and count rows twice."""
    deadline, last = time.monotonic() + within, -1
    while True:
        try:
            count = _count(stack, project_id, start)
            if count == last:
                stored = stack.stored_request_ids(project_id, start)
                if answered <= set(stored) or time.monotonic() > deadline:
                    return stored
            else:
                deadline, last = time.monotonic() + within, count
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            pass  # analytics restarting
        if time.monotonic() > deadline + within:
            return Counter()
        time.sleep(3.0)


Loaded = tuple[list[str], Counter[str], float | None]


async def _load_with_fault(
    stack: EmbeddedStack, scenario: Scenario, options: LoadOptions, fault_at: float
) -> Loaded:
    async with probe.client(options.url, options.key, options.timeout, 256) as http:
        first = await preflight(http, options.model)
        load = asyncio.create_task(run_load(options, first, lambda _: None))
        await asyncio.sleep(fault_at)
        injected = time.monotonic()
        await asyncio.to_thread(scenario.inject, stack)
        healthy = None
        if not scenario.stops_stack:
            healthy = await asyncio.to_thread(_time_to_healthy, stack, scenario, injected)
        run = await load
    answered = [o.request_id for o in run.outcomes if o.ok]
    errors = Counter(o.kind for o in run.outcomes if not o.ok)
    return answered, errors, healthy


def run_scenario(root: Path, scenario: Scenario, rate: float, duration: float,
                 fault_at: float, shared: EmbeddedStack | None) -> Result:  # fmt: skip
    env = stack_env(root) if shared is None else shared.env
    stack = shared
    if stack is None:
        stack = start_up(root, env, own_group=True)
        stack.wait_healthy()
    started = datetime.now(UTC) - timedelta(minutes=1)
    # PRO: 100,000 requests a day, so the plan's quota never refuses the load.
    project = stack.create_project(f"faults-{int(time.time() * 1000)}", plan="PRO")
    options = LoadOptions(url=stack.gateway_url, key=project.key, rate=rate, duration=duration)
    answered, errors, healthy = asyncio.run(_load_with_fault(stack, scenario, options, fault_at))
    if scenario.stops_stack:
        log = stack.log()
        note = "stopped cleanly" if log.rstrip().endswith("stopped") else "did not stop cleanly"
        if "did not stop within" in log:
            note += "; a process was killed after the grace"
        stack = start_up(root, env, own_group=True)  # again on the same data
        stack.wait_healthy()
    else:
        note = ""
    try:
        stored = _settle(stack, project.project_id, started, set(answered))
    finally:
        if scenario.stops_stack:
            stack.stop()
    answered_set = set(answered)
    return Result(
        scenario.name, len(answered), dict(errors), lost=len(answered_set - set(stored)),
        duplicated=sum(1 for n in stored.values() if n > 1),
        # The load's preflight request is stored too and never counted as answered.
        extra=len(set(stored) - answered_set) - 1, time_to_healthy_s=healthy, note=note,
    )  # fmt: skip


def _report(results: list[Result], args: argparse.Namespace) -> str:
    by_name = {s.name: s for s in SCENARIOS}
    lines = [
        "# Fault matrix (`make fault-matrix`)", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `watchllm up --fake-provider` on this "
        f"machine ({os.cpu_count()} cores); per scenario {round(args.rate * args.duration)} "
        f"requests at {args.rate:g} req/s (open loop, unique prompts), fault at "
        f"{args.fault_at:g} s.", "",
        "| scenario | answered | lost | duplicated | extra | caller errors | time to healthy "
        "| expected | note |", "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in results:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r.caller_errors.items())) or "0"
        healthy = "—" if r.time_to_healthy_s is None else f"{r.time_to_healthy_s:.1f} s"
        lines.append(f"| {r.scenario} | {r.answered} | {r.lost} | {r.duplicated} | {r.extra} "
                     f"| {errors} | {healthy} | {by_name[r.scenario].expectation} "
                     f"| {r.note} |")  # fmt: skip
    lines += ["", "lost: answered (200) but never stored; extra: stored, but the caller "
              "never read the answer (cut off by a stop or a kill); time to healthy: from "
              "the fault until `/health` said healthy (— for stops: the stack was started "
              "again).", ""]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--fault-at", type=float, default=10.0)
    parser.add_argument("--only", nargs="*", help="scenario names (substrings)")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or any(o in s.name for o in args.only)]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="watchllm-faults-") as tmp:
        root = Path(tmp)
        shared_root = root / "shared"
        shared_root.mkdir()
        with embedded_stack(shared_root) as shared:
            for scenario in [s for s in chosen if not s.stops_stack]:
                results.append(run_scenario(shared_root, scenario, args.rate, args.duration,
                                            args.fault_at, shared))  # fmt: skip
                print(json.dumps(asdict(results[-1])), file=sys.stderr, flush=True)  # noqa: T201
                shared.wait_healthy()
        for i, scenario in enumerate(s for s in chosen if s.stops_stack):
            own = root / f"stop-{i}"
            own.mkdir()
            results.append(run_scenario(own, scenario, args.rate, args.duration,
                                        args.fault_at, None))  # fmt: skip
            print(json.dumps(asdict(results[-1])), file=sys.stderr, flush=True)  # noqa: T201
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fault-matrix-latest.json").write_text(
        json.dumps([asdict(r) for r in results], indent=2)
    )
    report = _report(results, args)
    (RESULTS / "fault-matrix-latest.md").write_text(report)
    print(report)  # noqa: T201


if __name__ == "__main__":
    main()
