"""``make bench-routing``: what routing a model over several deployments costs, against
one deployment, side by side in one run (issue 15: the router's choice ≤ 20 µs).

1. In-process CPU, best of 5 (no sockets, nothing else on the path): the router's
   choice per request — the chain's lookup (``ModelRouter.chain``) and the pick
   (``Dispatcher._pick``: ``Balancer.choose`` among the healthy, untried deployments) —
   for one deployment, three weighted ones, and three whose latencies differ (the
   latency-aware branch); and the rpm/tpm check a deployment without limits pays.
2. A deployment with ``rpm``/``tpm``: one ``FCALL watchllm_deployment_take`` per
   attempt, timed back to back and with 5 ms between calls, and Redis's own time.
3. End to end, one gateway process: open-loop slices at ``--rate`` req/s rotate over
   three models of one routes file, all on the same fake provider: ``single`` (one
   deployment), ``routed`` (three, weights 1/2/3) and ``capped`` (three with rpm and
   tpm far above the load, so every attempt asks Redis). Slices are merged per model;
   the report gives each one's latency and its difference from ``single`` at each
   percentile, and the spread of that difference over the rounds' slices.

Writes ``tests/bench/results/routing-<UTC>.json`` and ``.md`` and copies them to
``routing-latest.*``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop
from prometheus_client import CollectorRegistry

from tests.bench.loadgen import Run, Target, run_open_loop, summarise
from tests.bench.procstat import machine
from tests.bench.stack import BenchStack, bench_stack
from tests.bench.stats import added
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.routing import Deployment, Dispatcher, ModelRouter
from watchllm_gateway.routing.balancer import Balancer
from watchllm_gateway.routing.capacity import DeploymentCapacity
from watchllm_gateway.routing.cooldown import Cooldowns
from watchllm_gateway.routing.metrics import RoutingMetrics
from watchllm_gateway.routing.schema import validate
from watchllm_gateway.settings import ProviderKind
from watchllm_shared.redis_packed import PackedCommands

log = logging.getLogger("bench")
RESULTS_DIR = Path(__file__).parent / "results"
MODELS = ("single", "routed", "capped")
TARGET_MICROS = 20.0


def routes(base_url: str) -> dict[str, Any]:
    def deployment(name: str, weight: float, **limits: int) -> dict[str, Any]:
        return {"provider": "openai", "base_url": base_url, "name": name, "weight": weight,
                "api_key_env": "WATCHLLM_BENCH_FAKE_KEY", **limits}  # fmt: skip

    capacity = {"rpm": 100_000_000, "tpm": 1_000_000_000_000}
    return {"models": [
        {"name": "single", "deployments": [deployment("single-0", 1)]},
        {"name": "routed", "deployments": [deployment(f"routed-{i}", i + 1) for i in range(3)]},
        {"name": "capped",
         "deployments": [deployment(f"capped-{i}", i + 1, **capacity) for i in range(3)]},
    ]}  # fmt: skip


def best_micros(call: Callable[[], object], number: int = 20_000) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def choice_costs() -> dict[str, float]:
    """Per request, in µs: the chain lookup and the pick, by routes shape."""
    router = ModelRouter.from_document(validate(routes("http://127.0.0.1:1/v1"), "bench"),
                                       lambda name: None)  # fmt: skip
    cooldowns = Cooldowns(1, 60, time.monotonic)
    balancer = Balancer(cooldowns)
    dispatcher = Dispatcher(None, balancer, RoutingMetrics(GatewayMetrics().registry), 3,  # type: ignore[arg-type]
                            0.2, 30)  # fmt: skip

    def choose(model: str) -> Callable[[], object]:
        def run() -> object:
            chain = router.chain(model, ProviderKind.OPENAI)
            return dispatcher._pick(chain, set(), set(), cooldowns.clock(), {})  # noqa: SLF001

        return run

    costs = {model: best_micros(choose(model)) for model in ("single", "routed")}
    for i, seconds in enumerate((0.05, 0.3, 0.9)):  # one fast, two slow: weights bent
        balancer.observe(f"routed-{i}", seconds)
    costs["routed, latencies apart"] = best_micros(choose("routed"))
    free = Deployment("free", ProviderKind.OPENAI, "http://x/v1", None)
    costs["rpm/tpm check, none set"] = best_micros(
        lambda: free.limited and dispatcher.capacity is not None, 200_000
    )
    return costs


async def take_costs(redis_url: str, calls: int = 2000) -> dict[str, Any]:
    client = aioredis.Redis.from_url(redis_url)
    commands = PackedCommands(client)
    capacity = DeploymentCapacity(commands, CollectorRegistry(), 1.0)
    limited = Deployment("bench-take", ProviderKind.OPENAI, "http://x/v1", None,
                         rpm=100_000_000, tpm=1_000_000_000_000)  # fmt: skip
    try:
        for _ in range(200):
            await capacity.take(limited)
        before = (await client.info("commandstats")).get("cmdstat_fcall", {})
        out: dict[str, Any] = {}
        for label, gap in (("back to back", 0.0), ("5 ms apart", 0.005)):
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                await capacity.take(limited)
                samples.append((time.perf_counter() - started) * 1e6)
                if gap:
                    await asyncio.sleep(gap)
            samples.sort()
            out[label] = {"p50_us": samples[len(samples) // 2],
                          "p99_us": samples[int(len(samples) * 0.99)]}  # fmt: skip
        after = (await client.info("commandstats")).get("cmdstat_fcall", {})
        out["inside_redis_us_per_call"] = (after["usec"] - before.get("usec", 0)) / max(
            1, after["calls"] - before.get("calls", 0)
        )
        return out
    finally:
        await commands.aclose()
        await client.aclose()


def target(stack: BenchStack, model: str) -> Target:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Write one short sentence about the sea."}],
    }
    endpoint = stack.gateway_endpoint
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {endpoint.key}"}
    return Target(endpoint.host, endpoint.port, "/v1/chat/completions",
                  json.dumps(body).encode(), headers=headers)  # fmt: skip


async def side_by_side(stack: BenchStack, rate: int, seconds: float, rounds: int) -> dict[str, Any]:
    targets = {model: target(stack, model) for model in MODELS}
    for model in MODELS:  # warm-up: connections, the balancer's latencies, the memo
        await run_open_loop(targets[model], rate, 1.0)
    slices: dict[str, list[Run]] = {model: [] for model in MODELS}
    for round_ in range(rounds):
        order = MODELS[round_ % 3 :] + MODELS[: round_ % 3]  # each goes first in turn
        for model in order:
            slices[model].append(await run_open_loop(targets[model], rate, seconds))
            await asyncio.sleep(0.3)
    merged = {model: summarise(runs) for model, runs in slices.items()}
    out: dict[str, Any] = {"rate": rate, "slice_seconds": seconds, "rounds": rounds}
    for model in MODELS:
        out[model] = merged[model].as_dict()
    for model in ("routed", "capped"):
        out[f"{model}_minus_single_ms"] = added(merged[model].latency_ms,
                                                merged["single"].latency_ms)  # fmt: skip
        pairs = [
            added(summarise([a]).latency_ms, summarise([b]).latency_ms).get("p50", 0.0)
            for a, b in zip(slices[model], slices["single"], strict=True)
        ]
        out[f"{model}_minus_single_p50_per_round_ms"] = pairs
    return out


def _machine(about: dict[str, Any]) -> str:
    return (f"Machine: {about['cores']} cores ({about['cpu']}), {about['platform']}, Python"
            f" {about['python']}; the gateway, the fake provider, Redis, Postgres and the"
            " load tool share these cores, with whatever else runs on them.")  # fmt: skip


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"routing-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str))
    choice, take, e2e = results["choice_us"], results["take"], results["end_to_end"]
    worst = max(v for k, v in choice.items() if k.startswith("routed"))
    verdict = "PASS" if worst - choice["single"] <= TARGET_MICROS else "MISS"
    lines = [
        f"# Routing bench — {results['started']}", "", _machine(results["machine"]), "",
        "## Verdict", "",
        "| target | measured | verdict |", "|---|---|---|",
        f"| the router's choice adds ≤ {TARGET_MICROS:.0f} µs per request (routed vs one"
        f" deployment, CPU) | {worst - choice['single']:.2f} µs | **{verdict}** |", "",
        "## The router's choice (in-process CPU, best of 5)", "",
        "| per request | µs |", "|---|---|",
        *(f"| {name} | {micros:.3f} |" for name, micros in choice.items()), "",
        "## A deployment with rpm/tpm: one FCALL per attempt", "",
        "| | p50 µs | p99 µs |", "|---|---|---|",
        *(f"| {k} | {v['p50_us']:.0f} | {v['p99_us']:.0f} |" for k, v in take.items()
          if isinstance(v, dict)),
        "", f"Inside Redis: {take['inside_redis_us_per_call']:.1f} µs per call"
        " (`INFO commandstats`).", "",
        f"## End to end, {e2e['rate']} req/s open loop, {e2e['rounds']} rounds of"
        f" {e2e['slice_seconds']} s per model, rotated", "",
        "Each model's slices against the same gateway and fake provider; the difference is"
        " what routing over three deployments (capped: plus one FCALL per request) adds.",
        "",
        "| latency ms | single | routed | capped | routed − single | capped − single |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for p in ("p50", "p90", "p99"):
        row = [e2e[m]["latency_ms"][p] for m in MODELS]
        lines.append(f"| {p} | " + " | ".join(f"{v:.3f}" for v in row)
                     + f" | {e2e['routed_minus_single_ms'][p]:+.3f}"
                     f" | {e2e['capped_minus_single_ms'][p]:+.3f} |")  # fmt: skip
    lines.append("")
    for model in ("routed", "capped"):
        pairs = e2e[f"{model}_minus_single_p50_per_round_ms"]
        lines.append(f"- {model} − single, p50 per round: "
                     + ", ".join(f"{p * 1000:+.0f} µs" for p in pairs)
                     + f" (median {statistics.median(pairs) * 1000:+.0f} µs)")  # fmt: skip
    for model in MODELS:
        lines.append(f"- {model}: {e2e[model]['ok']}/{e2e[model]['requests']} ok,"
                     f" errors {e2e[model]['errors']}")  # fmt: skip
    md_path = json_path.with_suffix(".md")
    md_path.write_text("\n".join(lines) + "\n")
    for path in (json_path, md_path):
        shutil.copyfile(path, out_dir / path.name.replace(stamp, "latest"))
    return md_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--slice", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": machine(), "choice_us": choice_costs()}  # fmt: skip
    log.info("choice: %s", results["choice_us"])

    def env(fake_url: str) -> dict[str, str]:
        return {"WATCHLLM_ROUTES": json.dumps(routes(f"{fake_url}/v1")),
                "WATCHLLM_DEFAULT_ALLOWED_MODELS": '["*"]'}  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="watchllm-routing-bench-") as work:
        with bench_stack(Path(work), extra_env=env) as stack:
            results["take"] = asyncio.run(take_costs(stack.redis_url))
            log.info("take: %s", results["take"])
            results["end_to_end"] = uvloop.run(
                side_by_side(stack, args.rate, args.slice, args.rounds)
            )
    log.info("report: %s", write_report(results, args.results_dir))


if __name__ == "__main__":
    main()
