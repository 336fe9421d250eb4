"""Analytics bench (``make bench-analytics``): the analytics service as a real process on
embedded chdb, fed through a real Redis stream, read through its HTTP query API.

1. Ingestion (``analytics_ingest``): N events XADDed as fast as one publisher can while
   the service consumes, from the first XADD to every row counted by ``count()``; then
   the consumer alone, draining N events already waiting in the stream. Repeated;
   medians, with the CPU each run cost per event (service, Redis, publisher).
2. Lag: a steady 1,000 events/s for a while; each event's lag is from its XADD to the
   first poll of the dashboard API (every 50 ms) that counts it (the consumer keeps
   stream order), plus the store's own view: ``ingested_at - occurred_at``.
3. Queries: 10 million rows generated inside ClickHouse (INSERT … SELECT FROM numbers(),
   200 projects, 5 models, 30 days), then each dashboard query through the HTTP API.

``--parts ingestion`` (etc.) runs a subset; ``--profile`` adds a py-spy summary of the
service during a drain. Writes ``tests/bench/results/analytics-<UTC>.{json,md}`` and
``analytics-latest.*`` (a subset run writes ``analytics-<parts>-latest.*`` instead).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import redis

from tests.analytics.conftest import make_event
from tests.bench.analytics_ingest import PROJECTS, Ingestion, summarise
from tests.bench.stats import distribution, percentile
from tests.support.processes import (
    ANALYTICS_AUTH,
    SERVICE_SECRETS,
    ServiceProcess,
    free_port,
    start_process,
)
from tests.support.servers import provide_redis
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_analytics.store import open_store

RESULTS = Path(__file__).parent / "results"
PARTS = ("ingestion", "lag", "queries")
GENERATE = """
INSERT INTO requests (event_id, occurred_at, schema_version, request_id, project_id, key_id,
  model, provider, endpoint, http_status, status, error_type, cache, stream, prompt_tokens,
  completion_tokens, cost_usd, cost_saved_usd, latency_ms, trace_id, upstream_attempts)
SELECT generateUUIDv4(number), now64(3) - toIntervalMillisecond(rand64(1) % 2592000000), 1,
  hex(number), toUUID(concat('00000000-0000-4000-8000-', leftPad(hex(number % 200), 12, '0'))),
  toUUID(concat('00000000-0000-4000-9000-', leftPad(hex(number % 1000), 12, '0'))),
  ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1', 'claude-haiku-4-5', 'claude-sonnet-4-5'][rand(2) % 5 + 1],
  'openai', '/v1/chat/completions', if(rand(3) % 50 = 0, 502, 200),
  if(rand(3) % 50 = 0, 'upstream_error', 'ok'), if(rand(3) % 50 = 0, 'upstream_5xx', ''),
  ['hit', 'miss', 'bypass'][rand(4) % 3 + 1], rand(5) % 4 = 0, rand(6) % 4000, rand(7) % 1500,
  toDecimal128(rand(6) % 4000, 12) * toDecimal128('0.00000015', 12),
  if(rand(4) % 3 = 0, toDecimal128('0.0003', 12), toDecimal128(0, 12)), 20 + rand(8) % 3000, '', 1
FROM numbers({start:UInt64}, {count:UInt64})"""


class Bench:
    def __init__(self, data_dir: Path, redis_url: str) -> None:
        self.stream = f"bench.analytics.{uuid.uuid4().hex[:8]}"
        self.env = {"REDIS_URL": redis_url, "WATCHLLM_DATA_DIR": str(data_dir),
                    "WATCHLLM_EVENTS_STREAM": self.stream,
                    "WATCHLLM_ANALYTICS_CONSUMER_NAME": "bench", **SERVICE_SECRETS}  # fmt: skip
        self.settings = AnalyticsSettings(data_dir=data_dir, events_stream=self.stream)
        self.redis = redis.Redis.from_url(redis_url)
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.service: ServiceProcess | None = None

    def start(self) -> ServiceProcess:
        port, metrics_port = free_port(), free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**self.env, "WATCHLLM_ANALYTICS_PORT": str(port),
               "WATCHLLM_ANALYTICS_METRICS_PORT": str(metrics_port)}  # fmt: skip
        log = self.logs / f"analytics-{port}.log"
        self.service = start_process("watchllm_analytics", [], env, f"{base}/readyz", base, log, 90)
        self.service.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        return self.service

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(30)
            self.service = None

    def rows_written(self) -> float:
        return self.metrics().get("watchllm_analytics_rows_written_total", 0.0)

    def metrics(self) -> dict[str, float]:
        """The service's samples by name, summed over their labels."""
        assert self.service is not None
        samples: dict[str, float] = {}
        for line in httpx.get(str(self.service.metrics_url)).text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                name = name.split("{", 1)[0]
                samples[name] = samples.get(name, 0.0) + float(value)
        return samples

    def query(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.service is not None
        reply = httpx.post(f"{self.service.url}/v1/queries/{name}", json=params,
                           headers=ANALYTICS_AUTH, timeout=30)  # fmt: skip
        if reply.status_code != 200:
            raise RuntimeError(f"{name} answered {reply.status_code}: {reply.text[:2000]}")
        return reply.json()  # type: ignore[no-any-return]

    def publish(self, payloads: list[dict[str, bytes]], chunk: int = 1000) -> None:
        for start in range(0, len(payloads), chunk):
            pipe = self.redis.pipeline(transaction=False)
            for fields in payloads[start : start + chunk]:
                pipe.xadd(self.stream, fields)  # type: ignore[arg-type]
            pipe.execute()

    def wait_rows(self, target: float, limit_s: float = 600) -> float:
        deadline = time.monotonic() + limit_s
        while self.rows_written() < target:
            assert time.monotonic() < deadline, f"stuck at {self.rows_written()} rows"
            time.sleep(0.02)
        return time.monotonic()


def bench_ingestion(
    bench: Bench, events: int, repeats: int, profile: bool, publisher: str
) -> dict[str, Any]:
    ingestion = Ingestion(bench, events, publisher)
    live = [ingestion.live() for _ in range(repeats)]
    backlog = [ingestion.backlog(bench.logs if profile and i == 0 else None)
               for i in range(repeats)]  # fmt: skip
    return {"events": events, "repeats": repeats, "publisher": publisher, "live": summarise(live),
            "backlog": summarise(backlog), "runs": {"live": live, "backlog": backlog}}  # fmt: skip


def bench_lag(bench: Bench, seconds: float, rate: int = 1000) -> dict[str, Any]:
    project = uuid.uuid4()
    service = bench.start()
    now = datetime.now(UTC)
    window = {"project_id": str(project), "start": (now - timedelta(hours=1)).isoformat(),
              "end": (now + timedelta(hours=2)).isoformat()}  # fmt: skip
    polls: list[tuple[float, int]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=service.url, headers=ANALYTICS_AUTH) as client:
            while not stop.is_set():
                body = client.post("/v1/queries/project_totals", json=window).json()
                polls.append((time.monotonic(), int(body["rows"][0][0])))
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    sent: list[float] = []
    tick, per_tick = 0.01, rate // 100
    begin = time.monotonic()
    while (elapsed := time.monotonic() - begin) < seconds:
        batch = [make_event(project).to_stream_fields() for _ in range(per_tick)]
        published_at = time.monotonic()
        bench.publish(batch)
        sent.extend([published_at] * per_tick)
        time.sleep(max(0.0, begin + (len(sent) // per_tick) * tick - time.monotonic()))
    while not polls or polls[-1][1] < len(sent):
        time.sleep(0.05)
    stop.set()
    poller.join()
    bench.stop()
    lags = [next(t for t, count in polls if count > i) - sent_at
            for i, sent_at in enumerate(sent)]  # fmt: skip
    return {"rate_per_s": len(sent) / elapsed, "events": len(sent),
            "xadd_to_queryable_ms": distribution(lags),
            "store_ingested_minus_occurred_ms": _store_lag(bench, project)}  # fmt: skip


def _store_lag(bench: Bench, project: uuid.UUID) -> dict[str, float]:
    client = clickhouse_connect.get_client(dsn=bench.settings.clickhouse_dsn(), database="watchllm")
    row = client.query(
        "SELECT quantiles(0.5, 0.99)(dateDiff('millisecond', occurred_at, ingested_at)),"
        " max(dateDiff('millisecond', occurred_at, ingested_at)) FROM requests"
        " WHERE project_id = {p:UUID}", parameters={"p": project},
    ).result_rows[0]  # fmt: skip
    client.close()
    return {"p50": row[0][0], "p99": row[0][1], "max": row[1]}


def generate_rows(bench: Bench, rows: int) -> float:
    started = time.monotonic()
    store = open_store(bench.settings)
    for start in range(0, rows, 1_000_000):
        count = min(1_000_000, rows - start)
        store.writer_client.command(GENERATE, parameters={"start": start, "count": count})
    store.close()
    return time.monotonic() - started


def bench_queries(bench: Bench, rows: int, runs: int) -> dict[str, Any]:
    generated_s = generate_rows(bench, rows)
    bench.start()
    now = datetime.now(UTC)
    results: dict[str, Any] = {"rows_generated": rows, "generate_seconds": generated_s}
    all_times: list[float] = []
    for name in ("project_totals", "project_usage_by_hour", "project_usage_by_model",
                 "project_usage_by_model_and_hour", "project_errors", "project_recent_requests",
                 "usage_by_project"):  # fmt: skip
        times = []
        for run in range(runs):
            project = PROJECTS[(run * 37) % len(PROJECTS)]
            days = (7, 30)[run % 2]
            params: dict[str, Any] = {"project_id": str(project), "start": (
                now - timedelta(days=days)).isoformat(), "end": now.isoformat()}  # fmt: skip
            if name == "usage_by_project":
                params.pop("project_id")
            if name == "project_recent_requests":
                params = {"project_id": str(project), "limit": 100}
            started = time.monotonic()
            bench.query(name, params)
            times.append(time.monotonic() - started)
        all_times += times
        results[name] = (distribution(times) or {}) | {"p95": percentile(sorted(times), 95) * 1000}
    results["all_queries_p95_ms"] = percentile(sorted(all_times), 95) * 1000
    everything = {"start": (now - timedelta(days=31)).isoformat(), "end": now.isoformat()}
    per_project = bench.query("usage_by_project", everything)["rows"]
    results["total_rows"] = sum(int(row[1]) for row in per_project)
    bench.stop()
    return results


def report(results: dict[str, Any]) -> str:
    lines = [f"# Analytics bench — {results['started_at']}", "",
             f"Machine: {os.cpu_count()} cores, shared by the service, Redis and the publisher"
             " (and by whatever else ran then). Embedded chdb.", _load_line(results), "",
             "| target | measured | verdict |", "|---|---|---|"]  # fmt: skip
    ing, lag, q = (results.get(part) for part in PARTS)
    if ing:
        live, backlog = ing["live"], ing["backlog"]
        rate = live["rate_per_s"]["median"]
        lines.append(
            f"| ingestion ≥ 50,000 events/s, XADD → queryable | {rate:,.0f}/s median of"
            f" {ing['repeats']} (min {live['rate_per_s']['min']:,.0f}); consumer alone from a"
            f" backlog {backlog['rate_per_s']['median']:,.0f}/s |"
            f" {'PASS' if rate >= 50_000 else 'MISS'} |"
        )
    if lag:
        xadd = lag["xadd_to_queryable_ms"]
        lines.append(
            f"| lag p99 ≤ 2 s at 1,000 events/s | p99 {xadd['p99']:.0f} ms (p50 {xadd['p50']:.0f},"
            f" max {xadd['max']:.0f}; {lag['rate_per_s']:,.0f}/s for {lag['events']:,} events) |"
            f" {'PASS' if xadd['p99'] <= 2000 else 'MISS'} |"
        )
    if q:
        lines.append(
            f"| dashboard queries p95 ≤ 500 ms over {q['total_rows']:,} rows |"
            f" p95 {q['all_queries_p95_ms']:.0f} ms over all queries |"
            f" {'PASS' if q['all_queries_p95_ms'] <= 500 else 'MISS'} |"
        )
    if ing:
        lines += _ingestion_lines(ing)
    if q:
        lines += [
            "",
            "| query (HTTP API, 30 runs) | p50 ms | p95 ms | max ms |",
            "|---|---|---|---|",
        ]
        for name, value in q.items():
            if isinstance(value, dict):
                lines.append(
                    f"| {name} | {value['p50']:.0f} | {value['p95']:.0f} | {value['max']:.0f} |"
                )
    if lag:
        store = lag["store_ingested_minus_occurred_ms"]
        lines += ["", f"Store's view of the lag (ingested_at − occurred_at): p50 {store['p50']:.0f}"
                  f" ms, p99 {store['p99']:.0f} ms."]  # fmt: skip
    if q:
        lines += ["", f"10M rows generated in {q['generate_seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def _redis(url: str | None, work_dir: Path) -> AbstractContextManager[str]:
    return nullcontext(url) if url else provide_redis(work_dir / "redis")


def _load_line(results: dict[str, Any]) -> str:
    """The machine's load (1, 5, 15 min) when the bench started and ended."""
    load = results.get("load_average", {})
    if "end" not in load:
        return ""
    start, end = (", ".join(f"{value:.2f}" for value in load[k]) for k in ("start", "end"))
    return f"Load average at the start: {start}; at the end: {end}."


def _ingestion_lines(ing: dict[str, Any]) -> list[str]:
    live, backlog = ing["live"], ing["backlog"]
    lines = [
        "", f"Ingestion of {ing['events']:,} events, {ing['repeats']} runs each"
        " (median, min–max; CPU µs per event, medians):", "",
        "| run | events/s | service CPU | Redis CPU | publisher + polling CPU |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for name, part in (("live: XADD → queryable", live), ("backlog: consumer alone", backlog)):
        r, cpu = part["rate_per_s"], part["cpu_us_per_event"]
        lines.append(
            f"| {name} | {r['median']:,.0f} ({r['min']:,.0f}–{r['max']:,.0f}) |"
            f" {cpu['service']:.1f} | {cpu['redis']:.1f} |"
            f" {cpu['bench_publisher_and_polling']:.1f} |"
        )
    publish = live["publish_rate_per_s"]
    lines += [
        "",
        f"The publisher ({ing.get('publisher', 'redis-py')}) XADDed at"
        f" {publish['median']:,.0f}/s (median) while the service consumed; the backlog rate"
        " runs from the first stored row to the last.",
    ]
    profile = ing["runs"]["backlog"][0].get("profile")
    if profile and profile.get("top_own"):
        lines += ["", f"py-spy on the service during a drain ({profile['busy_share']}% busy with"
                  " the GIL), own time by frame:", ""]  # fmt: skip
        lines += [f"- {row['own']}% {row['frame']}" for row in profile["top_own"][:12]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS)
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="py-spy the service during a drain")
    parser.add_argument("--publisher", choices=("redis-py", "pre-encoded"), default="redis-py",
                        help="how the live ingestion run XADDs (see analytics_ingest)")  # fmt: skip
    parser.add_argument("--lag-seconds", type=float, default=30.0)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--redis-url",
        help="default: $WATCHLLM_TEST_REDIS_URL, else an embedded Valkey of the bench's own"
        " (as the gateway bench does)",
    )
    args = parser.parse_args()
    parts = [part for part in PARTS if part in args.parts.split(",")]
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {"started_at": started_at, "options": vars(args),
                               "load_average": {"start": os.getloadavg()}}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="analytics-bench-") as tmp,
        _redis(args.redis_url, Path(tmp)) as redis_url,
    ):
        bench = Bench(Path(tmp), redis_url)
        try:
            if "ingestion" in parts:
                results["ingestion"] = bench_ingestion(bench, args.events, args.repeats,
                                                       args.profile, args.publisher)  # fmt: skip
            if "lag" in parts:
                results["lag"] = bench_lag(bench, args.lag_seconds)
            if "queries" in parts:
                results["queries"] = bench_queries(bench, args.rows, args.runs)
        finally:
            bench.stop()
            bench.redis.delete(bench.stream, f"{bench.stream}.dlq")
    results["load_average"]["end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    text = report(results)
    latest = (
        "analytics-latest" if len(parts) == len(PARTS) else f"analytics-{'-'.join(parts)}-latest"
    )
    for stem in (f"analytics-{started_at}", latest):
        (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
        (RESULTS / f"{stem}.md").write_text(text)
    print(text)  # noqa: T201 - the bench's report is its output


if __name__ == "__main__":
    main()
