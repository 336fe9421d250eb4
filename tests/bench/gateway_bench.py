"""``make bench``: what one gateway worker adds on top of its upstream, and how much.

Starts the fake provider and one gateway process (see ``stack``), then with the
project's open-loop load tool (``loadgen``):

1. for each rate and for non-stream and stream chat completions, alternates short
   slices against the gateway and directly against the fake provider (gateway,
   direct, gateway, direct, …) so machine noise hits both; reports both latency
   distributions and their difference per percentile (the *added* latency), and for
   streams the added time to first byte;
2. saturation: a closed loop against the gateway and against the fake alone;
3. the gateway worker's RSS before/after and its CPU time per request (/proc);
4. a py-spy profile of the gateway during a fixed-rate load it can sustain.

Saturation and the profile run before the rate sweep (see ``run_bench``).

Writes ``tests/bench/results/gateway-<UTC>.json`` and ``.md`` and copies them to
``gateway-latest.*``. ``--quick`` runs a short version; see ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import uvloop

from tests.bench import profiling, report
from tests.bench.loadgen import Run, Target, run_closed_loop, run_open_loop, summarise
from tests.bench.procstat import cpu_seconds, machine, memory_mb
from tests.bench.stack import MODEL, BenchStack, Endpoint, bench_stack
from tests.bench.stats import added

log = logging.getLogger("bench")
RESULTS_DIR = Path(__file__).parent / "results"
PAUSE_SECONDS = 0.3
SETTLE_SECONDS = 2.0  # after a slice that left answers outstanding (gateway overloaded)
METHOD = (
    "Open loop: request *i* is sent at t0 + i/rate whatever earlier requests do, over"
    " keep-alive connections opened on demand (cap 256); latency runs from the"
    " *scheduled* send to the last body byte, so stalls are not hidden (no coordinated"
    " omission); TTFB runs from the scheduled send to the first body byte. For each rate"
    " and kind, {rounds} slice(s) of {slice_seconds} s against the gateway alternate with"
    " as many against the fake provider directly ({target_rounds} at {target_rate} req/s,"
    " the rate the targets are judged at: the machine's speed drifts over minutes, and one"
    " pair of slices can land on a slow minute); slices are merged per target. *Added*"
    " = gateway minus direct at the same percentile (percentiles by linear interpolation)."
    " The load tool's own timer lag (about 0–1 ms, in `send_lag_ms` of the JSON) is in"
    " both and cancels out of the difference. Non-stream body: one short user message to"
    f" `{MODEL}`; stream: the same with `stream: true` (24-word reply, ~27 SSE events)."
    " The limiter's Redis Functions library is loaded, so each gateway request makes its"
    " one limiter `FCALL` (PRO plan, no per-minute limits set)."
    " Gateway CPU is utime+stime from /proc over the gateway slices (plus the pause after"
    " each, so event publishing is counted) divided by the requests sent. Order: warm-up,"
    " saturation, profile, then the rates from low to high (an overloaded rate leaves"
    " hundreds of idle upstream connections in the gateway's pool)."
)


@dataclass(frozen=True)
class Options:
    rates: tuple[int, ...] = (100, 200, 500, 1000)
    slice_seconds: float = 3.0
    rounds: int = 2
    target_rate: int = report.REFERENCE_RATE
    target_rounds: int = 6  # at ``target_rate``; the per-pair spread is in the report
    warmup_seconds: float = 2.0
    saturation_seconds: float = 5.0
    concurrency: int = 32
    profile_seconds: float = 5.0
    profile_rate: int = 300
    results_dir: Path = RESULTS_DIR


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.gateway_bench")
    parser.add_argument("--quick", action="store_true", help="a short run (~30 s)")
    parser.add_argument("--rates", help="comma-separated req/s, e.g. 100,200,500,1000")
    parser.add_argument("--slice", type=float, help="seconds per slice")
    parser.add_argument("--rounds", type=int, help="slices per target per rate")
    parser.add_argument("--target-rounds", type=int,
                        help=f"slices per target at {report.REFERENCE_RATE} req/s")  # fmt: skip
    parser.add_argument("--saturation", type=float, help="seconds per closed-loop run")
    parser.add_argument("--concurrency", type=int, help="closed-loop connections")
    parser.add_argument("--profile-seconds", type=float, help="0 skips the profile")
    parser.add_argument("--profile-rate", type=int)
    parser.add_argument("--results-dir", type=Path)
    args = parser.parse_args(argv)
    options = Options()
    if args.quick:
        options = replace(
            options, rates=(200, 1000), slice_seconds=1.0, rounds=1, target_rounds=1,
            warmup_seconds=1.0, saturation_seconds=2.0, profile_seconds=2.0,
        )  # fmt: skip
    overrides = {
        "rates": tuple(int(r) for r in args.rates.split(",")) if args.rates else None,
        "slice_seconds": args.slice, "rounds": args.rounds, "target_rounds": args.target_rounds,
        "saturation_seconds": args.saturation, "concurrency": args.concurrency,
        "profile_seconds": args.profile_seconds, "profile_rate": args.profile_rate,
        "results_dir": args.results_dir,
    }  # fmt: skip
    return replace(options, **{k: v for k, v in overrides.items() if v is not None})


def target(endpoint: Endpoint, stream: bool) -> Target:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write one short sentence about the sea."}],
    }
    if stream:
        body["stream"] = True
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {endpoint.key}"}
    return Target(endpoint.host, endpoint.port, "/v1/chat/completions",
                  json.dumps(body).encode(), headers=headers)  # fmt: skip


async def measure_pair(stack: BenchStack, mode: str, rate: int, opts: Options) -> dict[str, Any]:
    stream = mode == "stream"
    gateway, direct = target(stack.gateway_endpoint, stream), target(stack.direct_endpoint, stream)
    pid, cpu, gateway_runs, direct_runs = stack.gateway_pid, 0.0, [], []
    rounds = opts.target_rounds if rate == opts.target_rate else opts.rounds
    for _ in range(rounds):
        before = cpu_seconds(pid)
        gateway_runs.append(await run_open_loop(gateway, rate, opts.slice_seconds))
        overloaded = any(r.error is not None for r in gateway_runs[-1].records)
        await asyncio.sleep(SETTLE_SECONDS if overloaded else PAUSE_SECONDS)
        cpu += cpu_seconds(pid) - before
        direct_runs.append(await run_open_loop(direct, rate, opts.slice_seconds))
        await asyncio.sleep(PAUSE_SECONDS)
    g, d = summarise(gateway_runs), summarise(direct_runs)
    log.info("%-6s %5d req/s: added p50 %s ms, p99 %s ms; errors %d/%d", mode, rate,
             _ms(added(g.latency_ms, d.latency_ms), "p50"),
             _ms(added(g.latency_ms, d.latency_ms), "p99"), g.errors, d.errors)  # fmt: skip
    return {
        "mode": mode, "rate": rate, "gateway": g.as_dict(), "direct": d.as_dict(),
        "added_latency_ms": added(g.latency_ms, d.latency_ms),
        "added_service_ms": added(g.service_ms, d.service_ms),
        "added_ttfb_ms": added(g.ttfb_ms, d.ttfb_ms),
        "rounds": rounds,
        "added_p50_per_round_ms": per_round_p50(gateway_runs, direct_runs),
        "gateway_cpu_ms_per_request": cpu * 1000 / g.requests if g.requests else None,
        "gateway_overloaded": g.errors > 0 or g.queued_at_cap > 0,
    }  # fmt: skip


def per_round_p50(gateway_runs: list[Run], direct_runs: list[Run]) -> dict[str, list[float]]:
    """Added p50 of each gateway slice against the direct slice right after it: how
    much the verdict would swing had the bench run only that pair."""
    spread: dict[str, list[float]] = {"latency": [], "ttfb": []}
    for g_run, d_run in zip(gateway_runs, direct_runs, strict=True):
        g, d = summarise([g_run]), summarise([d_run])
        for name, g_dist, d_dist in (("latency", g.latency_ms, d.latency_ms),
                                     ("ttfb", g.ttfb_ms, d.ttfb_ms)):  # fmt: skip
            p50 = added(g_dist, d_dist).get("p50")
            if p50 is not None:
                spread[name].append(round(p50, 3))
    return spread


def _ms(values: dict[str, float], key: str) -> str:
    return f"{values[key]:.2f}" if key in values else "?"


async def saturation(stack: BenchStack, opts: Options) -> dict[str, Any]:
    pid, c = stack.gateway_pid, opts.concurrency
    before = cpu_seconds(pid)
    gateway = summarise([await run_closed_loop(target(stack.gateway_endpoint, False), c,
                                               opts.saturation_seconds)])  # fmt: skip
    cpu = cpu_seconds(pid) - before
    await asyncio.sleep(PAUSE_SECONDS)
    direct = summarise([await run_closed_loop(target(stack.direct_endpoint, False), c,
                                              opts.saturation_seconds)])  # fmt: skip
    log.info("saturation: gateway %.0f req/s, direct %.0f req/s",
             gateway.throughput_rps, direct.throughput_rps)  # fmt: skip
    return {
        "gateway": gateway.as_dict(), "direct": direct.as_dict(),
        "gateway_cpu_ms_per_request": cpu * 1000 / gateway.requests if gateway.requests else None,
        "gateway_cpu_busy": cpu / gateway.duration_s if gateway.duration_s else None,
    }  # fmt: skip


async def profile(stack: BenchStack, opts: Options, work_dir: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"seconds": opts.profile_seconds, "rate": opts.profile_rate,
                            "mode": "non-stream"}  # fmt: skip
    if opts.profile_seconds <= 0:
        return {**info, "ok": False, "message": "skipped (--profile-seconds 0)"}
    raw_path = work_dir / "gateway-profile.txt"
    load = run_open_loop(target(stack.gateway_endpoint, False), opts.profile_rate,
                         opts.profile_seconds + 1.0)  # fmt: skip
    (ok, message), _ = await asyncio.gather(
        profiling.record(stack.gateway_pid, opts.profile_seconds, raw_path), load
    )
    log.info("profile: %s", message)
    if not ok:
        return {**info, "ok": False, "message": message}
    summary = profiling.summarise(raw_path.read_text(), opts.profile_seconds)
    return {**info, "ok": True, "message": message, "summary": summary}


async def run_bench(stack: BenchStack, opts: Options, work_dir: Path) -> dict[str, Any]:
    pid = stack.gateway_pid
    memory: dict[str, float] = {"before_mb": memory_mb(pid)["VmRSS"]}
    for endpoint in (stack.gateway_endpoint, stack.direct_endpoint):  # warm pools and caches
        for stream in (False, True):
            await run_open_loop(target(endpoint, stream), 200, opts.warmup_seconds / 2)
    memory["after_warmup_mb"] = memory_mb(pid)["VmRSS"]
    # Saturation and the profile first: overloaded open-loop rates leave hundreds of
    # idle upstream connections in the gateway's pool, which would colour both.
    sat = await saturation(stack, opts)
    prof = await profile(stack, opts, work_dir)
    latency = [await measure_pair(stack, mode, rate, opts)
               for rate in sorted(opts.rates) for mode in ("chat", "stream")]  # fmt: skip
    now = memory_mb(pid)
    memory.update(after_mb=now["VmRSS"], peak_mb=now["VmHWM"])
    results: dict[str, Any] = {
        "machine": machine(), "options": {**asdict(opts), "results_dir": None},
        "method": METHOD.format(rounds=opts.rounds, slice_seconds=opts.slice_seconds,
                                target_rounds=opts.target_rounds, target_rate=opts.target_rate),
        "latency": latency, "saturation": sat, "memory": memory, "profile": prof,
        "limiter_library": stack.limiter_library,
    }  # fmt: skip
    results["verdicts"] = report.verdicts(results)
    return results


def write_results(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    md_path = directory / f"gateway-{stamp}.md"
    json_path = directory / f"gateway-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(report.markdown(results))
    shutil.copyfile(json_path, directory / "gateway-latest.json")
    shutil.copyfile(md_path, directory / "gateway-latest.md")
    return md_path


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every cleanup, like Ctrl-C


async def _cancellable(stack: BenchStack, opts: Options, work_dir: Path) -> dict[str, Any]:
    """``run_bench`` with SIGTERM cancelling it (as the runner does for Ctrl-C), rather
    than an exception raised inside whatever loop callback happens to be running."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run_bench(stack, opts, work_dir)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _terminate)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%X")
    for noisy in ("httpx", "alembic", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    work_dir = Path(tempfile.mkdtemp(prefix="watchllm-bench-"))
    try:
        with bench_stack(work_dir) as stack:
            results = uvloop.run(_cancellable(stack, opts, work_dir))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log.error("interrupted; everything started was stopped (logs in %s)", work_dir)
        return 130
    except Exception:
        log.exception("bench failed; process logs are in %s", work_dir)
        return 1
    md_path = write_results(results, opts.results_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    for v in results["verdicts"]:
        log.info("%-55s %-28s %s", v["target"], v.get("text", "–"), v["verdict"])
    log.info("report: %s", md_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
