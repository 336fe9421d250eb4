"""The limiter's added latency on the request path: ``RateLimiter.check`` — the exact
code the gateway awaits before forwarding — against a real Redis, side by side in the
same run, in alternating slices so machine noise hits all alike, with the same FCALL
through redis-py's client (``Redis.fcall``, how the gateway asked until it moved to
``PackedCommands``) and a bare PING through redis-py's client.

Two shapes: one request at a time (pure round trip) and 32 concurrent askers (a busy
gateway). The subject has every limit configured (plan day quota, project and key
requests per minute, key tokens per minute) so the library does its full work; a second
subject has the same limits plus all four budgets (project and key, day and month, with
spend charged), asked in the same alternating slices (``limiter_check_budgets``: what
budgets add to the call). Client-side times on a shared machine swing by more than
that, so the same two checks are also timed inside Redis (``INFO commandstats``,
``usec_per_call`` of alternating batches of back-to-back calls; it resets Redis's command
statistics, so point it at a Redis of its own): ``inside_redis``.

Run: ``make bench-limiter`` (or ``python -m tests.bench.limiter_bench``). Writes
``tests/bench/results/limiter-<UTC>.{json,md}`` and ``limiter-latest.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.stats import distribution
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.ratelimit import RateLimiter
from watchllm_limiter.library import ensure_library
from watchllm_shared.accounts import KeyGrant, Plan
from watchllm_shared.contracts.budgets import SPEND_FUNCTION, charge_spend_keys
from watchllm_shared.contracts.limits import CHECK_FUNCTION, check_keys, limits_key
from watchllm_shared.redis_io import create_redis
from watchllm_shared.redis_packed import PackedCommands

RESULTS = Path(__file__).parent / "results"
TARGET_P50_MS = 0.3


def _grant() -> KeyGrant:
    return KeyGrant(key_id=uuid.uuid4(), project_id=uuid.uuid4(), project_name="bench",
                    plan=Plan.PRO, active=True, allowed_models=None,
                    requests_per_day=10**9)  # fmt: skip


async def _timed(samples: list[float], ask: Any) -> None:
    started = time.perf_counter()
    await ask()
    samples.append(time.perf_counter() - started)


async def _slice(ask: Any, count: int, concurrency: int, samples: list[float]) -> None:
    async def worker(n: int) -> None:
        for _ in range(n):
            await _timed(samples, ask)

    share = count // concurrency
    await asyncio.gather(*(worker(share) for _ in range(concurrency)))


async def measure(redis_url: str, per_slice: int, rounds: int) -> dict[str, Any]:
    redis = create_redis(redis_url)
    await ensure_library(redis)
    commands = PackedCommands(redis)
    limiter = RateLimiter(commands, GatewayMetrics(), timeout_seconds=1.0, policy="closed")
    grant, budgeted = _grant(), _grant()
    for subject in (grant, budgeted):
        await redis.hset(limits_key(subject.project_id), mapping={
            "day": 10**9, "rpm": 10**9, f"k:{subject.key_id}:rpm": 10**9,
            f"k:{subject.key_id}:tpm": 10**9,
        })  # fmt: skip
    await redis.hset(limits_key(budgeted.project_id), mapping={
        "bd": 10**18, "bm": 10**18, f"k:{budgeted.key_id}:bd": 10**18,
        f"k:{budgeted.key_id}:bm": 10**18,
    })  # fmt: skip
    spend = charge_spend_keys(budgeted.project_id, budgeted.key_id, uuid.uuid4())
    await redis.fcall(SPEND_FUNCTION, len(spend), *spend, 12_345, int(time.time() * 1000), "")
    counter = iter(range(10**9))

    async def check() -> None:
        await limiter.check(grant, f"bench-{next(counter)}")

    async def check_budgets() -> None:
        await limiter.check(budgeted, f"bench-{next(counter)}")

    async def fcall_client() -> None:
        keys = check_keys(grant.project_id, grant.key_id)
        await redis.fcall(CHECK_FUNCTION, len(keys), *keys, str(grant.key_id),
                          grant.requests_per_day, f"bench-{next(counter)}", "")  # fmt: skip

    async def ping() -> None:
        await redis.ping()

    results: dict[str, Any] = {}
    for concurrency in (1, 32):
        calls = {"limiter_check": check, "limiter_check_budgets": check_budgets,
                 "redis_py_fcall": fcall_client, "ping": ping}  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            await _slice(call, per_slice // 10, concurrency, [])  # warm-up
        for _ in range(rounds):
            for name, call in calls.items():
                await _slice(call, per_slice, concurrency, samples[name])
        results[f"concurrency_{concurrency}"] = {
            **{name: distribution(values) for name, values in samples.items()},
            "samples": len(samples["limiter_check"]),
        }
    results["inside_redis"] = await _inside_redis(redis, {"limiter_check": grant,
                                                          "limiter_check_budgets": budgeted},
                                                  rounds * 4)  # fmt: skip
    for subject in (grant, budgeted):
        await redis.delete(
            *[k async for k in redis.scan_iter(f"watchllm:limit:{{{subject.project_id}}}*")]
        )
    await commands.aclose()
    await redis.aclose()
    return results


async def _inside_redis(
    redis: Any, subjects: dict[str, KeyGrant], rounds: int, batch: int = 300
) -> dict[str, dict[str, float]]:
    """Microseconds per call inside Redis, per subject: median and minimum over
    ``rounds`` alternating batches (each subject's request logs emptied first, so every
    batch does the same work)."""
    per_call: dict[str, list[float]] = {name: [] for name in subjects}
    for round_ in range(rounds):
        for name, grant in subjects.items():
            keys = check_keys(grant.project_id, grant.key_id)
            await redis.delete(*keys[2:4])
            await redis.config_resetstat()
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(batch):
                    pipe.fcall(CHECK_FUNCTION, len(keys), *keys, str(grant.key_id), 10**9,
                               f"inside-{round_}-{i}", "", "", "", "0")  # fmt: skip
                await pipe.execute()
            stats = await redis.info("commandstats")
            per_call[name].append(float(stats["cmdstat_fcall"]["usec_per_call"]))
    return {name: {"median_us": statistics.median(values), "min_us": min(values)}
            for name, values in per_call.items()}  # fmt: skip


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Limiter: added latency on the request path", "",
        f"{report['date']} · {report['machine']} · Redis at {report['redis_url']}", "",
        "`RateLimiter.check` (one `FCALL watchllm_limit_check` with day, project rpm, key rpm"
        " and key tpm limits, sent by `PackedCommands`) vs the same FCALL through redis-py's"
        " `Redis.fcall` vs `PING` through redis-py, alternating slices, milliseconds;"
        " `limiter_check_budgets`: the same check of a subject with all four budgets.", "",
        "| shape | call | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for shape, data in report["results"].items():
        if shape == "inside_redis":
            continue
        for call in ("limiter_check", "limiter_check_budgets", "redis_py_fcall", "ping"):
            d = data[call]
            lines.append(f"| {shape} | {call} | {d['p50']:.3f} | {d['p90']:.3f} |"
                         f" {d['p99']:.3f} | {d['max']:.3f} |")  # fmt: skip
    inside = report["results"].get("inside_redis")
    if inside:
        lines += ["", "Inside Redis (`INFO commandstats`, µs per call, alternating batches):", "",
                  "| call | median | min |", "|---|---|---|"]  # fmt: skip
        for call, d in inside.items():
            lines.append(f"| {call} | {d['median_us']:.1f} | {d['min_us']:.1f} |")
    p50 = report["results"]["concurrency_1"]["limiter_check"]["p50"]
    verdict = "PASS" if p50 <= TARGET_P50_MS else "MISS"
    lines += ["", f"Target: added p50 ≤ {TARGET_P50_MS} ms one at a time — **{verdict}**"
              f" ({p50:.3f} ms)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get(
        "WATCHLLM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))  # fmt: skip
    parser.add_argument("--per-slice", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(measure(args.redis_url, args.per_slice, args.rounds))
    now = datetime.now(UTC)
    report = {"date": now.isoformat(timespec="seconds"), "redis_url": args.redis_url,
              "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
              "results": results}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    for name in (f"limiter-{stamp}", "limiter-latest"):
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(render(report))
    print(render(report))  # noqa: T201 - the report is this tool's output


if __name__ == "__main__":
    main()
