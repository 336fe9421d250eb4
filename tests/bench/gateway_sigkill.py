"""``python -m tests.bench.gateway_sigkill``: the events a SIGKILLed gateway loses.

A gateway publishes a request's event after the answer's last byte, through an
in-memory queue to Redis (``watchllm_gateway.events``): a kill in between loses the
event of an answered request. This bench measures that window. Each round starts a
fresh gateway process (real Redis and Postgres, the fake provider, the limiter library
loaded), sends chat completions open loop at ``--rate`` req/s and SIGKILLs the gateway
at a random moment after the first second; then every answered ``x-request-id`` is
looked up in the events stream. Reported over ``--kills`` rounds: events lost, and how
long before the kill each lost answer had reached the caller (the window's width).

    python -m tests.bench.gateway_sigkill [--kills 20] [--rate 200] [--results-dir DIR]

Writes ``gateway-sigkill-<UTC>.json`` and ``.md`` to the results directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import statistics
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis
import redis.asyncio as aioredis

from tests.bench.procstat import machine
from tests.bench.stack import MODEL, gateway_env
from tests.support.processes import ServiceProcess, start_fake_provider, start_gateway
from tests.support.servers import fresh_database, provide_postgres, provide_redis
from watchllm_limiter.library import ensure_library
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.accounts import migrate as migrations
from watchllm_shared.contracts import RequestCompleted

log = logging.getLogger("bench")
RESULTS_DIR = Path(__file__).parent / "results"
WARM_UP_SECONDS = 1.0


@dataclass
class Round:
    answered: int = 0
    lost: int = 0
    lost_ages_ms: list[float] = field(default_factory=list)  # kill time − answer time
    answered_last_20ms: int = 0  # answers that reached the caller ≤ 20 ms before the kill


@dataclass
class Answer:
    request_id: str
    at: float  # loop time the caller had the whole body


async def _ask(http: aiohttp.ClientSession, url: str, key: str, n: int) -> Answer | None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"kill window {n}"}]}
    try:
        async with http.post(url, json=body, headers={"authorization": f"Bearer {key}"}) as r:
            await r.read()
            if r.status != 200:
                return None
            return Answer(r.headers["x-request-id"], asyncio.get_running_loop().time())
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None  # cut off by the kill: never answered


async def _load_and_kill(
    gateway: ServiceProcess, key: str, rate: float
) -> tuple[list[Answer], float]:
    """Open loop until the kill; (every answer, the loop time of the kill). The kill has
    a timer of its own, so it falls anywhere between two sends."""
    loop = asyncio.get_running_loop()
    url = f"{gateway.url}/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=256)
    tasks: list[asyncio.Task[Answer | None]] = []

    async def send(http: aiohttp.ClientSession) -> None:
        started = loop.time()
        for n in range(10**9):
            await asyncio.sleep(max(0.0, started + n / rate - loop.time()))
            tasks.append(asyncio.create_task(_ask(http, url, key, n)))

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        sender = asyncio.create_task(send(http))
        await asyncio.sleep(WARM_UP_SECONDS + random.uniform(0.0, 1.0))
        killed_at = loop.time()
        os.kill(gateway.process.pid, signal.SIGKILL)
        sender.cancel()
        answers = [a for a in await asyncio.gather(*tasks) if a is not None]
    gateway.process.wait()
    return answers, killed_at


def _stored_request_ids(redis_url: str, stream: str) -> set[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        entries: Any = client.xrange(stream)
    finally:
        client.close()
    return {RequestCompleted.from_stream_fields(fields).request_id for _, fields in entries}


async def _prepare(database_url: str, redis_url: str) -> str:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        store = AccountStore(pool, actor="bench")
        await store.create_project("sigkill", Plan.PRO)
        secret = (await store.create_key("sigkill", "bench")).secret
    finally:
        await pool.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        await ensure_library(client)
    finally:
        await client.aclose()
    return secret


def run(kills: int, rate: float, work_dir: Path) -> list[Round]:
    rounds = []
    with provide_redis(work_dir) as redis_url, provide_postgres(work_dir) as admin_url:
        with fresh_database(admin_url, "watchllm_bench_sigkill") as database_url:
            migrations.upgrade(database_url)
            key = asyncio.run(_prepare(database_url, redis_url))
            fake = start_fake_provider(work_dir)
            try:
                for k in range(kills):
                    stream = f"bench.sigkill.{uuid.uuid4().hex}"
                    env = gateway_env(fake.url, redis_url, database_url, stream)
                    gateway = start_gateway(env, work_dir)
                    try:
                        answers, killed_at = asyncio.run(_load_and_kill(gateway, key, rate))
                    finally:
                        gateway.kill()
                    stored = _stored_request_ids(redis_url, stream)
                    redis.Redis.from_url(redis_url).delete(stream)
                    lost = [a for a in answers if a.request_id not in stored]
                    r = Round(
                        answered=len(answers), lost=len(lost),
                        lost_ages_ms=sorted(round((killed_at - a.at) * 1000, 2) for a in lost),
                        answered_last_20ms=sum(1 for a in answers if killed_at - a.at <= 0.02),
                    )  # fmt: skip
                    log.info("kill %d: %d answered, %d lost %s", k + 1, r.answered, r.lost,
                             r.lost_ages_ms)  # fmt: skip
                    rounds.append(r)
            finally:
                fake.stop()
    return rounds


def summarise(rounds: list[Round], rate: float) -> dict[str, Any]:
    ages = [age for r in rounds for age in r.lost_ages_ms]
    lost = sum(r.lost for r in rounds)
    return {
        "kills": len(rounds),
        "rate": rate,
        "answered": sum(r.answered for r in rounds),
        "lost": lost,
        "lost_per_kill": round(lost / len(rounds), 2),
        "kills_losing_events": sum(1 for r in rounds if r.lost),
        "lost_age_ms_max": max(ages) if ages else None,
        "lost_age_ms_median": statistics.median(ages) if ages else None,
        "answered_last_20ms_per_kill": round(
            sum(r.answered_last_20ms for r in rounds) / len(rounds), 2
        ),
    }


def _markdown(summary: dict[str, Any], when: str, rounds: list[Round]) -> str:
    lines = [
        f"# Gateway SIGKILL window ({when})", "",
        f"{summary['kills']} kills of a gateway under {summary['rate']:g} req/s (chat"
        " completions, open loop), each at a random moment after the first second;"
        " every answered x-request-id looked up in the events stream.", "",
        "| answered | lost | lost per kill | kills losing events | lost answers' age at the"
        " kill (median / max) | answers ≤ 20 ms before the kill, per kill |",
        "|---|---|---|---|---|---|",
        f"| {summary['answered']} | {summary['lost']} | {summary['lost_per_kill']} |"
        f" {summary['kills_losing_events']} | {summary['lost_age_ms_median']} /"
        f" {summary['lost_age_ms_max']} ms | {summary['answered_last_20ms_per_kill']} |", "",
        "Ages of lost answers per kill (ms before the kill; negative: read just after it):",
        "",
    ]  # fmt: skip
    lines += [f"- kill {i + 1}: {r.lost_ages_ms}" for i, r in enumerate(rounds) if r.lost]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.gateway_sigkill")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="watchllm-sigkill-") as tmp:
        rounds = run(args.kills, args.rate, Path(tmp))
    summary = summarise(rounds, args.rate)
    when = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = {"summary": summary, "rounds": [asdict(r) for r in rounds], "machine": machine()}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"gateway-sigkill-{when}.json").write_text(json.dumps(results, indent=2))
    (args.results_dir / f"gateway-sigkill-{when}.md").write_text(_markdown(summary, when, rounds))
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
