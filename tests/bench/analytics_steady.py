"""The analytics service's CPU at everyday rates (``make bench-analytics-steady``, issue 21).

The real service (a process of its own, embedded chdb, a real Redis stream) is fed a
steady open-loop stream of events (event ``i`` XADDed at ``t0 + i / rate``, whatever
the service does) at each rate, and its CPU is read from ``/proc/<pid>/stat``
(utime + stime) before and after each window: CPU time, not wall time, so a busy
machine slows the run down but hardly changes the figure. Reported per rate: % of one
core and ms of CPU per event, the median over the rounds; an idle window too.

``--baseline REV`` runs the service's code as of git revision ``REV`` beside the
working tree's, interleaved round by round (same Redis, same machine load), so the
before/after comparison is one run: the baseline's ``watchllm_analytics`` package is
exported with ``git archive`` and put first on the service's ``PYTHONPATH``.

``--candidate REV`` runs a revision's code instead of the working tree's (edit on while
it runs). ``--profile`` adds, for the candidate's service at the first rate, a py-spy summary
and the CPU of each of its threads (chdb's background pools show up by name there).

Writes ``tests/bench/results/analytics-steady-latest.{json,md}``.
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
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from tests.analytics.conftest import make_event
from tests.bench import profiling
from tests.bench.procstat import cpu_seconds
from tests.support.processes import SERVICE_SECRETS, ServiceProcess, free_port, start_process
from tests.support.servers import provide_redis

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[2]
PACKAGE = "services/analytics/src/watchllm_analytics"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Variant:
    """One version of the service's code: the working tree's, or a git revision's."""

    def __init__(self, name: str, pythonpath: Path | None) -> None:
        self.name = name
        self.pythonpath = pythonpath

    @classmethod
    def at_revision(cls, revision: str, into: Path) -> Variant:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, PACKAGE],
                                 check=True, capture_output=True).stdout  # fmt: skip
        into.mkdir(parents=True)
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        return cls(revision, into / "services/analytics/src")


class SteadyService:
    """The service under test, on a fresh data directory and stream of its own."""

    def __init__(self, variant: Variant, redis_url: str, work: Path, settings: list[str]) -> None:
        self.stream = f"bench.steady.{uuid.uuid4().hex[:8]}"
        data = work / f"data-{self.stream}"
        data.mkdir(parents=True)
        port, metrics_port = free_port(), free_port()
        env = {"REDIS_URL": redis_url, "WATCHLLM_DATA_DIR": str(data),
               "WATCHLLM_EVENTS_STREAM": self.stream, "WATCHLLM_LOG_LEVEL": "WARNING",
               "WATCHLLM_ANALYTICS_CONSUMER_NAME": "bench", **SERVICE_SECRETS,
               "WATCHLLM_ANALYTICS_PORT": str(port),
               "WATCHLLM_ANALYTICS_METRICS_PORT": str(metrics_port)}  # fmt: skip
        env.update(setting.partition("=")[::2] for setting in settings)
        if variant.pythonpath is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(variant.pythonpath), os.environ.get("PYTHONPATH")])
            )
        base = f"http://127.0.0.1:{port}"
        log = work / f"{variant.name.replace('/', '_')}-{port}.log"
        self.process: ServiceProcess = start_process(
            "watchllm_analytics", [], env, f"{base}/readyz", base, log, 120
        )
        self.pid = self.process.process.pid
        self.redis = redis.Redis.from_url(redis_url)

    def stop(self) -> None:
        self.process.stop(30)
        self.redis.delete(self.stream, f"{self.stream}.dlq")
        self.redis.close()

    def publish_steady(self, rate: float, seconds: float) -> int:
        """XADD ``rate`` events a second for ``seconds``, open loop; the number sent."""
        total = round(rate * seconds)
        payloads = [make_event().to_stream_fields() for _ in range(total)]
        t0 = time.monotonic() + 0.01
        for index, fields in enumerate(payloads):
            delay = t0 + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.redis.xadd(self.stream, fields)  # type: ignore[arg-type]
        return total

    def wait_acknowledged(self, within: float = 120) -> None:
        """Until the group has nothing undelivered and nothing pending (stored and acked)."""
        deadline = time.monotonic() + within
        while True:
            groups: Any = self.redis.xinfo_groups(self.stream)
            group = next((g for g in groups if g["name"] == b"analytics"), None)
            if group is not None and (group["lag"], group["pending"]) == (0, 0):
                return
            assert time.monotonic() < deadline, f"not all stored: {group}"
            time.sleep(0.05)


def measure(service: SteadyService, rate: float, seconds: float) -> dict[str, float]:
    """One window at ``rate`` (0: idle): the service's CPU over it, per event and per second."""
    before, started = cpu_seconds(service.pid), time.monotonic()
    if rate:
        events = service.publish_steady(rate, seconds)
        service.wait_acknowledged()
    else:
        events = 0
        time.sleep(seconds)
    cpu, elapsed = cpu_seconds(service.pid) - before, time.monotonic() - started
    return {"rate": rate, "events": events, "seconds": elapsed, "cpu_seconds": cpu,
            "core_percent": 100 * cpu / elapsed,
            "cpu_ms_per_event": 1000 * cpu / events if events else 0.0}  # fmt: skip


def thread_cpu(pid: int) -> Counter[str]:
    """CPU seconds so far of each of ``pid``'s threads, summed by thread name."""
    by_name: Counter[str] = Counter()  # seconds, as floats
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        by_name[name] += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # type: ignore[assignment]
    return by_name


def profile(service: SteadyService, rate: float, seconds: float, work: Path) -> dict[str, Any]:
    """py-spy and per-thread CPU while publishing at ``rate``."""
    output = work / "steady-profile.raw"
    threads_before = thread_cpu(service.pid)
    outcome: list[tuple[bool, str]] = []
    recorder = threading.Thread(
        target=lambda: outcome.append(asyncio.run(profiling.record(service.pid, seconds, output)))
    )
    recorder.start()
    service.publish_steady(rate, seconds)
    recorder.join()
    service.wait_acknowledged()
    threads = thread_cpu(service.pid)
    threads.subtract(threads_before)
    result: dict[str, Any] = {"rate": rate, "seconds": seconds,
                              "thread_cpu_seconds": dict(threads.most_common(12))}  # fmt: skip
    ok, message = outcome[0] if outcome else (False, "py-spy did not run")
    result["py_spy"] = (
        profiling.summarise(output.read_text(), seconds) if ok else {"error": message}
    )
    return result


def run(args: argparse.Namespace, work: Path, redis_url: str) -> dict[str, Any]:
    variants = [Variant("working tree", None)]
    if args.candidate:
        variants = [Variant.at_revision(args.candidate, work / "candidate")]
    if args.baseline:
        variants.insert(0, Variant.at_revision(args.baseline, work / "baseline"))
    rates = [0.0, *args.rates]
    windows: dict[str, dict[str, list[dict[str, float]]]] = {
        v.name: {str(rate): [] for rate in rates} for v in variants
    }
    profiled: dict[str, Any] | None = None
    for round_number in range(args.rounds):
        for variant in variants:
            service = SteadyService(variant, redis_url, work, args.set)
            try:
                service.publish_steady(200, 2)  # warm up: first batch, pandas import, …
                service.wait_acknowledged()
                time.sleep(args.settle)
                for rate in rates:
                    windows[variant.name][str(rate)].append(measure(service, rate, args.seconds))
                    time.sleep(args.settle)
                if args.profile and profiled is None and variant is variants[-1]:
                    profiled = profile(service, args.rates[0], args.seconds, work)
            finally:
                service.stop()
            print(f"round {round_number + 1}/{args.rounds} {variant.name}: " + ", ".join(  # noqa: T201
                f"{w[-1]['rate']:.0f}/s {w[-1]['core_percent']:.1f}%"
                for w in windows[variant.name].values()))  # fmt: skip
    return {"windows": windows, "medians": _medians(windows), "profile": profiled}


def _medians(windows: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    return {
        name: {
            rate: {
                key: statistics.median(w[key] for w in runs)
                for key in ("core_percent", "cpu_ms_per_event")
            }  # fmt: skip
            for rate, runs in by_rate.items()
        }
        for name, by_rate in windows.items()
    }


def report(results: dict[str, Any]) -> str:
    options = results["options"]
    lines = [
        f"# Analytics at everyday rates — {results['started_at']}",
        "",
        f"The analytics service (embedded chdb) fed a steady open-loop stream; its CPU from"
        f" /proc/<pid>/stat over windows of {options['seconds']:.0f} s; medians of"
        f" {options['rounds']} rounds, variants interleaved. Machine: {os.cpu_count()} cores,"
        f" load average {results['load_average']['start'][0]:.1f} at the start,"
        f" {results['load_average']['end'][0]:.1f} at the end.",
        "",
        "| code | rate (events/s) | % of one core | ms of CPU per event |",
        "|---|---|---|---|",
    ]
    for name, by_rate in results["medians"].items():
        for rate, median in by_rate.items():
            per_event = f"{median['cpu_ms_per_event']:.2f}" if float(rate) else "—"
            lines.append(f"| {name} | {float(rate):.0f} | {median['core_percent']:.1f} |"
                         f" {per_event} |")  # fmt: skip
    if profiled := results.get("profile"):
        lines += ["", f"Threads of the candidate's service at {profiled['rate']:.0f} events/s"
                  f" ({profiled['seconds']:.0f} s), CPU seconds:", ""]  # fmt: skip
        lines += [f"- {name}: {cpu:.2f}" for name, cpu in profiled["thread_cpu_seconds"].items()]
        spy = profiled["py_spy"]
        if spy.get("top_own"):
            lines += ["", f"py-spy (GIL holder, {spy['busy_share']}% busy), own time by frame:", ""]
            lines += [f"- {row['own']}% {row['frame']}" for row in spy["top_own"][:12]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0, help="pause between windows")
    parser.add_argument("--baseline", help="a git revision to run beside the working tree")
    parser.add_argument("--candidate", help="a git revision to run instead of the working tree")
    parser.add_argument("--profile", action="store_true", help="py-spy and threads at rate 1")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment setting for the service (both variants)")  # fmt: skip
    args = parser.parse_args()
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {"started_at": started_at, "options": vars(args),
                               "load_average": {"start": os.getloadavg()}}  # fmt: skip
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="analytics-steady-")))
        redis_url = stack.enter_context(provide_redis(work / "redis"))
        results.update(run(args, work, redis_url))
    results["load_average"]["end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    text = report(results)
    for stem in (f"analytics-steady-{started_at}", "analytics-steady-latest"):
        (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
        (RESULTS / f"{stem}.md").write_text(text)
    print(text)  # noqa: T201 - the bench's report is its output


if __name__ == "__main__":
    main()
