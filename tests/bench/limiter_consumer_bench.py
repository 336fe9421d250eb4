"""The limiter's event consumer at everyday rates (``make bench-limiter-consumer``, issue 21).

The real limiter service (a process of its own: the charger, the limits sync against
Postgres, the heartbeat, the stream trimming) is fed a steady open-loop stream of
request-completed events (event ``i`` XADDed at ``t0 + i / rate``, whatever the service
does) from ``--projects`` projects of three keys each, every event with tokens and a
cost and every project with a tokens-per-minute limit (so each charge writes the token
windows and the four spend counters, as it does for a user with limits and budgets).
Its CPU is read from ``/proc/<pid>/stat`` (utime + stime) before and after each window:
CPU time, not wall time, so a busy machine slows the run down but hardly changes the
figure. Each window ends once the group has nothing unread and nothing pending. Reported
per rate: % of one core and ms of CPU per event, the median over the rounds, and the
median and p99 of the CPU of each second of the windows (a thread samples /proc every
second); an idle window too; and how long each event took from its XADD to its
acknowledgement (``ChargeDelays``: what gathering costs in lateness). Redis's own CPU
over the same windows is reported beside it (``INFO cpu`` of the bench's private Redis).

``--baseline REV`` runs the limiter's code as of git revision ``REV`` beside the working
tree's, interleaved round by round (same Redis, same machine load), so the before/after
comparison is one run: the baseline's ``watchllm_limiter`` package is exported with
``git archive`` and put first on the service's ``PYTHONPATH``. Both share one Redis:
the Functions library there is the newest either loaded (the loader never downgrades),
and an older limiter calls its own functions, which newer libraries keep.

``--baseline-set NAME=VALUE`` sets the baseline's environment alone: ``--baseline HEAD
--baseline-set WATCHLLM_LIMITER_GATHER_MS=0`` shows what gathering adds to batching.

``--profile`` adds a py-spy summary of each variant at each rate (after the windows).

Writes ``tests/bench/results/limiter-consumer-latest.{json,md}`` (and a dated copy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis

from tests.bench import profiling
from tests.bench.procstat import cpu_seconds
from tests.support.processes import ServiceProcess, start_limiter
from tests.support.servers import fresh_database, provide_postgres, provide_redis
from watchllm_shared.accounts import migrate as migrations
from watchllm_shared.contracts import RequestCompleted, RequestStatus
from watchllm_shared.contracts.limits import limits_key

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[2]
PACKAGE = "services/limiter/src/watchllm_limiter"
TARGET_CORE_PERCENT_AT_200 = 3.0  # issue 21


class Variant:
    """One version of the limiter's code: the working tree's, or a git revision's."""

    def __init__(
        self, name: str, pythonpath: Path | None, settings: list[str] | None = None
    ) -> None:
        self.name = name
        self.pythonpath = pythonpath
        self.settings = settings or []  # NAME=VALUE for this variant only

    @classmethod
    def at_revision(cls, revision: str, into: Path) -> Variant:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, PACKAGE],
                                 check=True, capture_output=True).stdout  # fmt: skip
        into.mkdir(parents=True)
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        return cls(revision, into / "services/limiter/src")


class Subjects:
    """Projects and keys the events belong to, each project with a tokens-per-minute
    limit (project and key), so charges write every window a user with limits has."""

    def __init__(self, client: redis.Redis, projects: int) -> None:
        self.keys = [(p, uuid.uuid4()) for p in (uuid.uuid4() for _ in range(projects))
                     for _ in range(3)]  # fmt: skip
        for project, key in self.keys:
            client.hset(limits_key(project), mapping={"tpm": 10**12, f"k:{key}:tpm": 10**12})

    def event(self, index: int) -> dict[Any, Any]:
        project, key = self.keys[index % len(self.keys)]
        return RequestCompleted(
            event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), request_id=f"r{index}",
            project_id=project, key_id=key, endpoint="/v1/chat/completions", http_status=200,
            status=RequestStatus.OK, prompt_tokens=120, completion_tokens=80, latency_ms=300,
            model="gpt-4o-mini", cost_usd=Decimal("0.0000660"),
        ).to_stream_fields()  # fmt: skip


class ConsumerUnderTest:
    """The limiter service under test, on a stream of its own."""

    def __init__(self, variant: Variant, redis_url: str, database_url: str, work: Path,
                 subjects: Subjects, settings: list[str]) -> None:  # fmt: skip
        self.stream = f"bench.limiter.{uuid.uuid4().hex[:8]}"
        self.subjects = subjects
        env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url,
               "WATCHLLM_EVENTS_STREAM": self.stream, "WATCHLLM_LOG_LEVEL": "WARNING",
               "WATCHLLM_EVENTS_STREAM_GROUPS": '["limiter"]',
               "WATCHLLM_LIMITER_CONSUMER_NAME": "bench"}  # fmt: skip
        env.update(setting.partition("=")[::2] for setting in [*settings, *variant.settings])
        if variant.pythonpath is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(variant.pythonpath), os.environ.get("PYTHONPATH")])
            )
        self.process: ServiceProcess = start_limiter(env, work)
        self.pid = self.process.process.pid
        self.redis = redis.Redis.from_url(redis_url)
        self.redis_url = redis_url
        self.sent = 0

    def stop(self) -> None:
        self.process.stop(30)
        self.redis.delete(self.stream, f"{self.stream}.dlq")
        self.redis.close()

    def publish_steady(self, rate: float, seconds: float, ids: list[bytes] | None = None) -> int:
        """XADD ``rate`` events a second for ``seconds``, open loop; the number sent (their
        entry ids appended to ``ids``)."""
        total = round(rate * seconds)
        payloads = [self.subjects.event(self.sent + i) for i in range(total)]
        self.sent += total
        t0 = time.monotonic() + 0.01
        for index, fields in enumerate(payloads):
            delay = t0 + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            entry_id: Any = self.redis.xadd(self.stream, fields)
            if ids is not None:
                ids.append(entry_id)
        return total

    def wait_acknowledged(self, within: float = 120) -> None:
        """Until the group has nothing unread and nothing pending (charged and acked)."""
        deadline = time.monotonic() + within
        while True:
            groups: Any = self.redis.xinfo_groups(self.stream)
            group = next((g for g in groups if g["name"] == b"limiter"), None)
            if group is not None and (group["lag"], group["pending"]) == (0, 0):
                return
            assert time.monotonic() < deadline, f"not all charged: {group}"
            time.sleep(0.02)


def redis_cpu_seconds(client: redis.Redis) -> float:
    info: Any = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class SecondSampler:
    """The process's CPU each second of a window (% of a core), from a thread of its own:
    the spread behind a window's mean. Resolution: one clock tick (10 ms), 1 % of a core
    per sample."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last, at = cpu_seconds(self.pid), time.monotonic()
        while not self._done.wait(max(0.0, at + 1.0 - time.monotonic())):
            now, cpu = time.monotonic(), cpu_seconds(self.pid)
            self.samples.append(100 * (cpu - last) / (now - at))
            last, at = cpu, now

    def stop(self) -> list[float]:
        self._done.set()
        self._thread.join()
        return self.samples


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


class ChargeDelays:
    """When each published event was acknowledged (charged, then XACKed), as seen by
    polling the group every 10 ms from the bench's own thread and client: an entry at or
    below the group's last delivered id and below its oldest pending one is acked. The
    delay is the poll's time minus the entry's XADD (its id's milliseconds, Redis's clock
    on this host), so it is up to one poll late: resolution 10 ms."""

    def __init__(self, redis_url: str, stream: str, ids: list[bytes]) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.stream, self.ids = stream, ids
        self.delays_ms: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _frontier(self) -> tuple[tuple[int, int], bool]:
        """(id, inclusive): every entry up to it is acked."""
        groups: Any = self.client.xinfo_groups(self.stream)
        group = next(g for g in groups if g["name"] == b"limiter")
        if group["pending"]:
            oldest: Any = self.client.xpending(self.stream, "limiter")
            if oldest["min"] is not None:
                return _id(oldest["min"]), False
            # Acknowledged since XINFO: everything delivered then is acked now.
        return _id(group["last-delivered-id"]), True

    def _run(self) -> None:
        seen = 0
        while not self._done.wait(0.01) or seen < len(self.ids):
            frontier, inclusive = self._frontier()
            now_ms = time.time() * 1000
            while seen < len(self.ids):
                at = _id(self.ids[seen])
                if at > frontier or (at == frontier and not inclusive):
                    break
                self.delays_ms.append(now_ms - at[0])
                seen += 1
            if self._done.is_set() and seen < len(self.ids):
                time.sleep(0.01)

    def stop(self) -> list[float]:
        """After the window is acknowledged: every event's delay."""
        self._done.set()
        self._thread.join()  # the window is acknowledged: its next poll sees every entry
        self.client.close()
        return self.delays_ms


def measure(service: ConsumerUnderTest, rate: float, seconds: float) -> dict[str, Any]:
    """One window at ``rate`` (0: idle): the limiter's CPU over it, per event and per second."""
    before, redis_before = cpu_seconds(service.pid), redis_cpu_seconds(service.redis)
    started = time.monotonic()
    sampler = SecondSampler(service.pid)
    ids: list[bytes] = []
    delays = ChargeDelays(service.redis_url, service.stream, ids) if rate else None
    if rate:
        events = service.publish_steady(rate, seconds, ids)
        service.wait_acknowledged()
    else:
        events = 0
        time.sleep(seconds)
    per_second = sampler.stop()
    charge_delays = delays.stop() if delays is not None else []
    cpu, elapsed = cpu_seconds(service.pid) - before, time.monotonic() - started
    redis_cpu = redis_cpu_seconds(service.redis) - redis_before
    return {"rate": rate, "events": events, "seconds": elapsed, "cpu_seconds": cpu,
            "core_percent": 100 * cpu / elapsed,
            "cpu_ms_per_event": 1000 * cpu / events if events else 0.0,
            "redis_core_percent": 100 * redis_cpu / elapsed,
            "per_second_core_percent": per_second,
            "charge_delay_ms": charge_delays}  # fmt: skip


def profile(service: ConsumerUnderTest, rate: float, seconds: float, work: Path) -> dict[str, Any]:
    """py-spy while publishing at ``rate``."""
    output = work / f"limiter-profile-{service.stream}-{rate:.0f}.raw"
    outcome: list[tuple[bool, str]] = []
    recorder = threading.Thread(
        target=lambda: outcome.append(asyncio.run(profiling.record(service.pid, seconds, output)))
    )
    recorder.start()
    service.publish_steady(rate, seconds)
    recorder.join()
    service.wait_acknowledged()
    ok, message = outcome[0] if outcome else (False, "py-spy did not run")
    summary = profiling.summarise(output.read_text(), seconds) if ok else {"error": message}
    return {"rate": rate, "seconds": seconds, "py_spy": summary}


def run(args: argparse.Namespace, work: Path, redis_url: str, database_url: str) -> dict[str, Any]:
    variants = [Variant("working tree", None)]
    if args.baseline:
        variants.insert(0, Variant.at_revision(args.baseline, work / "baseline"))
        variants[0].settings = args.baseline_set
        if args.baseline_set:
            variants[0].name += " with " + " ".join(args.baseline_set)
    rates = [0.0, *args.rates]
    windows: dict[str, dict[str, list[dict[str, float]]]] = {
        v.name: {str(rate): [] for rate in rates} for v in variants
    }
    profiles: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    client = redis.Redis.from_url(redis_url)
    subjects = Subjects(client, args.projects)
    client.close()
    for round_number in range(args.rounds):
        for variant in variants:
            service = ConsumerUnderTest(variant, redis_url, database_url, work, subjects, args.set)
            try:
                service.publish_steady(200, 2)  # warm up: first batch, imports, …
                service.wait_acknowledged()
                time.sleep(args.settle)
                for rate in rates:
                    windows[variant.name][str(rate)].append(measure(service, rate, args.seconds))
                    time.sleep(args.settle)
                if args.profile and round_number == args.rounds - 1:
                    profiles[variant.name] = [
                        profile(service, rate, args.seconds, work) for rate in args.rates
                    ]
            finally:
                service.stop()
            print(f"round {round_number + 1}/{args.rounds} {variant.name}: " + ", ".join(  # noqa: T201
                f"{w[-1]['rate']:.0f}/s {w[-1]['core_percent']:.1f}%"
                for w in windows[variant.name].values()), flush=True)  # fmt: skip
    return {"windows": windows, "summary": _summary(windows), "profiles": profiles}


def _summary(windows: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per variant and rate: medians over the rounds, and the median and p99 of the
    one-second samples and of the events' charge delays over all rounds' windows."""
    out: dict[str, Any] = {}
    for name, by_rate in windows.items():
        out[name] = {}
        for rate, runs in by_rate.items():
            seconds = sorted(x for w in runs for x in w["per_second_core_percent"]) or [0.0]
            delays = sorted(x for w in runs for x in w["charge_delay_ms"]) or [0.0]
            out[name][rate] = {
                stat: statistics.median(w[stat] for w in runs)
                for stat in ("core_percent", "cpu_ms_per_event", "redis_core_percent")
            } | {"second_median": statistics.median(seconds),
                 "second_p99": seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))],
                 "second_samples": len(seconds),
                 "delay_median_ms": statistics.median(delays),
                 "delay_p99_ms": delays[min(len(delays) - 1, int(0.99 * len(delays)))]}  # fmt: skip
    return out


def report(results: dict[str, Any]) -> str:
    options = results["options"]
    lines = [
        f"# The limiter's event consumer at everyday rates — {results['started_at']}",
        "",
        f"The limiter service fed a steady open-loop stream (events of {options['projects']}"
        f" projects × 3 keys, each with tokens and a cost, every project with tokens-per-minute"
        f" limits); its CPU from /proc/<pid>/stat over windows of {options['seconds']:.0f} s,"
        f" medians of {options['rounds']} rounds, variants interleaved; per second: the"
        f" median and p99 of one-second samples over all rounds (resolution 1 % of a core);"
        f" Redis's CPU (INFO cpu) over the same windows (the bench's delay poller's commands"
        f" included, alike for every variant); charge delay: XADD to acknowledged (charged,"
        f" then XACKed), every event of all rounds, polled every 10 ms. Machine:"
        f" {os.cpu_count()} cores, load average"
        f" {results['load_average']['start'][0]:.1f} at the start,"
        f" {results['load_average']['end'][0]:.1f} at the end. Target (issue 21): the limiter"
        f" ≤ {TARGET_CORE_PERCENT_AT_200:.0f} % of a core at 200 events/s.",
        "",
        "| code | rate (events/s) | limiter % of a core | ms of CPU per event |"
        " per second: median, p99 (% of a core) | Redis % of a core |"
        " charge delay: median, p99 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_rate in results["summary"].items():
        for rate, s in by_rate.items():
            per_event = f"{s['cpu_ms_per_event']:.3f}" if float(rate) else "—"
            delay = (f"{s['delay_median_ms']:.0f}, {s['delay_p99_ms']:.0f}"
                     if float(rate) else "—")  # fmt: skip
            lines.append(
                f"| {name} | {float(rate):.0f} | {s['core_percent']:.2f} | {per_event} |"
                f" {s['second_median']:.1f}, {s['second_p99']:.1f} |"
                f" {s['redis_core_percent']:.2f} | {delay} |"
            )
    for name, profiled in (results.get("profiles") or {}).items():
        for one in profiled:
            spy = one["py_spy"]
            if not spy.get("top_own"):
                lines += ["", f"py-spy, {name} at {one['rate']:.0f} events/s: {spy}"]
                continue
            lines += ["", f"py-spy, {name} at {one['rate']:.0f} events/s"
                      f" ({one['seconds']:.0f} s, GIL holder {spy['busy_share']}% busy),"
                      " own time by frame:", ""]  # fmt: skip
            lines += [f"- {row['own']}% {row['frame']}" for row in spy["top_own"][:10]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--settle", type=float, default=1.0, help="pause between windows")
    parser.add_argument("--baseline", help="a git revision to run beside the working tree")
    parser.add_argument("--baseline-set", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment setting for the baseline only")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="py-spy of each variant and rate")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment setting for the service (every variant)")  # fmt: skip
    args = parser.parse_args()
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {"started_at": started_at, "options": vars(args),
                               "load_average": {"start": os.getloadavg()}}  # fmt: skip
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="limiter-consumer-")))
        redis_url = stack.enter_context(provide_redis(work / "redis"))
        admin_url = stack.enter_context(provide_postgres(work / "postgres"))
        database_url = stack.enter_context(fresh_database(admin_url, "watchllm_bench"))
        migrations.upgrade(database_url)
        results.update(run(args, work, redis_url, database_url))
    results["load_average"]["end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    text = report(results)
    for stem in (f"limiter-consumer-{started_at}", "limiter-consumer-latest"):
        (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
        (RESULTS / f"{stem}.md").write_text(text)
    print(text)  # noqa: T201 - the bench's report is its output


if __name__ == "__main__":
    main()
