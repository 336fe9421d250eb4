"""Cache hits through the gateway: exact-hit and semantic-hit latency, and semantic
lookups per second, against a real cache service (real model, qdrant-edge).

Method: one answer is stored, then (one request at a time, keep-alive) the same
request is repeated (exact hits) and near-repeat variants of it are asked (semantic
hits: a new exact key each, the same meaning). ``/livez`` on the same connection,
interleaved, is the floor a request costs the client and the loopback. Then 16
concurrent clients ask semantic variants for a few seconds (lookups per second).
Run: ``make bench-cache``. Writes ``tests/bench/results/cache-latest.{json,md}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from tests.bench.stats import distribution
from tests.support.processes import start_cache_service, start_fake_provider, start_gateway
from tests.support.servers import fresh_database, provide_postgres, provide_redis
from watchllm_shared.accounts import migrate
from watchllm_shared.cli.main import cli

RESULTS = Path(__file__).parent / "results"
QUESTION = "How do I reset my password?"
VARIANTS = [QUESTION.lower(), "How do I reset my password??", "how do I reset my password",
            "HOW do I reset my password?", "How do I reset my password ?"]  # fmt: skip


def _key(database_url: str) -> str:
    env, name = {"DATABASE_URL": database_url}, f"bench-{uuid.uuid4().hex[:8]}"
    CliRunner().invoke(cli, ["projects", "create", name, "--plan", "PRO"], env=env)
    return CliRunner().invoke(cli, ["keys", "create", "--project", name, "--quiet"],
                              env=env).output.strip()  # fmt: skip


def _body(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}


async def _timed(http: httpx.AsyncClient, url: str, body: dict[str, Any] | None,
                 expect: str | None) -> float:  # fmt: skip
    started = time.perf_counter()
    if body is None:
        await http.get(url)
    else:
        response = await http.post(url, json=body)
        assert response.headers.get("x-watchllm-cache") == expect, response.headers
    return time.perf_counter() - started


async def measure(gateway: str, key: str, rounds: int) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {key}"}
    chat = f"{gateway}/v1/chat/completions"
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        await http.post(chat, json=_body(QUESTION))
        await asyncio.sleep(1.0)  # stored after the answer
        exact, semantic, floor = [], [], []
        for i in range(rounds):
            floor.append(await _timed(http, f"{gateway}/livez", None, None))
            exact.append(await _timed(http, chat, _body(QUESTION), "hit"))
            semantic.append(await _timed(http, chat, _body(VARIANTS[i % len(VARIANTS)]), "hit"))
    count = 0

    async def client(deadline: float) -> None:
        nonlocal count
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            while time.perf_counter() < deadline:
                await http.post(chat, json=_body(VARIANTS[count % len(VARIANTS)]))
                count += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(started + 5.0) for _ in range(16)))
    return {"exact_hit_ms": distribution(exact), "semantic_hit_ms": distribution(semantic),
            "livez_floor_ms": distribution(floor),
            "semantic_lookups_per_second": count / (time.perf_counter() - started)}  # fmt: skip


def render(report: dict[str, Any]) -> str:
    r = report["results"]
    lines = ["# Cache hits through the gateway", "",
             f"{report['date']} · {report['machine']}", "", __doc__.split("\n\n")[1], "",
             "| ms | p50 | p90 | p99 | max |", "|---|---|---|---|---|"]  # fmt: skip
    for name in ("exact_hit_ms", "semantic_hit_ms", "livez_floor_ms"):
        d = r[name]
        lines.append(f"| {name} | {d['p50']:.2f} | {d['p90']:.2f} | {d['p99']:.2f} |"
                     f" {d['max']:.2f} |")  # fmt: skip
    exact, semantic = r["exact_hit_ms"]["p50"], r["semantic_hit_ms"]["p50"]
    lines += ["", f"Semantic lookups per second (16 clients, 5 s): "
              f"{r['semantic_lookups_per_second']:.0f}", "",
              f"- exact-hit p50 ≤ 1.5 ms: **{'PASS' if exact <= 1.5 else 'MISS'}** ({exact:.2f})",
              f"- semantic-hit p50 ≤ 8 ms: **{'PASS' if semantic <= 8 else 'MISS'}**"
              f" ({semantic:.2f})"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with (
            provide_redis(work / "redis") as redis_url,
            provide_postgres(work / "pg") as admin,
            fresh_database(admin, "bench") as db,
        ):
            migrate.upgrade(db)
            fake = start_fake_provider(work)
            env = {"REDIS_URL": redis_url, "DATABASE_URL": db, "WATCHLLM_LOG_LEVEL": "WARNING",
                   "WATCHLLM_ROUTES": json.dumps([{"pattern": "*", "provider": "openai",
                                                   "base_url": f"{fake.url}/v1"}]),
                   "WATCHLLM_LIMITER_ENABLED": "false",
                   "WATCHLLM_QDRANT_EDGE_PATH": str(work / "qdrant")}  # fmt: skip
            cache = start_cache_service(env, work)
            gateway = start_gateway(env, work)
            try:
                results = asyncio.run(measure(gateway.url, _key(db), rounds=300))
            finally:
                for process in (gateway, cache, fake):
                    process.stop()
    now = datetime.now(UTC)
    report = {"date": now.isoformat(timespec="seconds"), "results": results,
              "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}"}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cache-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "cache-latest.md").write_text(render(report))
    print(render(report))  # noqa: T201 - the report is this tool's output


if __name__ == "__main__":
    main()
