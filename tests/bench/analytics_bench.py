"""Analytics bench (``make bench-analytics``): the analytics service as a real process on
embedded chdb, fed through a real Redis stream, read through its HTTP query API.

1. Ingestion: N events XADDed as fast as one publisher can while the service consumes;
   rate = N / (first XADD → last row stored and queryable). Then the consumer alone:
   N events already waiting in the stream, drained after a restart.
2. Lag: a steady 1,000 events/s for a while; each event's lag is from its XADD to the
   first poll of the dashboard API (every 50 ms) that counts it (the consumer keeps
   stream order), plus the store's own view: ``ingested_at - occurred_at``.
3. Queries: 10 million rows generated inside ClickHouse (INSERT … SELECT FROM numbers(),
   200 projects, 5 models, 30 days), then each dashboard query through the HTTP API.

Writes ``tests/bench/results/analytics-<UTC>.{json,md}`` and ``analytics-latest.*``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import redis

from tests.analytics.conftest import make_event
from tests.bench.stats import distribution, percentile
from tests.support.processes import ServiceProcess, free_port, start_process
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_analytics.store import open_store

RESULTS = Path(__file__).parent / "results"
PROJECTS = [uuid.UUID(f"00000000-0000-4000-8000-{i:012x}") for i in range(200)]
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
                    "WATCHLLM_ANALYTICS_CONSUMER_NAME": "bench"}  # fmt: skip
        self.settings = AnalyticsSettings(data_dir=data_dir, events_stream=self.stream)
        self.redis = redis.Redis.from_url(redis_url)
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.service: ServiceProcess | None = None

    def start(self) -> ServiceProcess:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**self.env, "WATCHLLM_ANALYTICS_PORT": str(port)}
        log = self.logs / f"analytics-{port}.log"
        self.service = start_process("watchllm_analytics", [], env, f"{base}/readyz", base, log, 90)
        return self.service

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(30)
            self.service = None

    def rows_written(self) -> float:
        assert self.service is not None
        for line in httpx.get(f"{self.service.url}/metrics").text.splitlines():
            if line.startswith("watchllm_analytics_rows_written_total "):
                return float(line.split()[1])
        return 0.0

    def query(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.service is not None
        reply = httpx.post(f"{self.service.url}/v1/queries/{name}", json=params, timeout=30)
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


def bench_ingestion(bench: Bench, events: int) -> dict[str, Any]:
    payloads = [make_event(PROJECTS[i % 200]).to_stream_fields() for i in range(events)]
    bench.start()
    started = time.monotonic()
    bench.publish(payloads)
    published = time.monotonic()
    done = bench.wait_rows(events)
    bench.stop()
    backlog = [make_event(PROJECTS[i % 200]).to_stream_fields() for i in range(events)]
    bench.publish(backlog)
    bench.start()
    ready = time.monotonic()
    drained = bench.wait_rows(events)
    bench.stop()
    return {
        "events": events,
        "publish_rate_per_s": events / (published - started),
        "end_to_end_rate_per_s": events / (done - started),
        "backlog_drain_rate_per_s": events / (drained - ready),
    }


def bench_lag(bench: Bench, seconds: float, rate: int = 1000) -> dict[str, Any]:
    project = uuid.uuid4()
    service = bench.start()
    now = datetime.now(UTC)
    window = {"project_id": str(project), "start": (now - timedelta(hours=1)).isoformat(),
              "end": (now + timedelta(hours=2)).isoformat()}  # fmt: skip
    polls: list[tuple[float, int]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=service.url) as client:
            while not stop.is_set():
                body = client.post("/v1/queries/project_totals", json=window).json()
                polls.append((time.monotonic(), int(body["rows"][0][0])))
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    sent: list[float] = []
    tick, per_tick = 0.01, rate // 100
    begin = time.monotonic()
    while (now := time.monotonic()) - begin < seconds:
        batch = [make_event(project).to_stream_fields() for _ in range(per_tick)]
        at = time.monotonic()
        bench.publish(batch)
        sent.extend([at] * per_tick)
        time.sleep(max(0.0, begin + (len(sent) // per_tick) * tick - time.monotonic()))
    while not polls or polls[-1][1] < len(sent):
        time.sleep(0.05)
    stop.set()
    poller.join()
    bench.stop()
    lags = [next(t for t, count in polls if count > i) - at for i, at in enumerate(sent)]
    return {"rate_per_s": len(sent) / (now - begin), "events": len(sent),
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
        results[name] = distribution(times) | {"p95": percentile(sorted(times), 95) * 1000}
    results["all_queries_p95_ms"] = percentile(sorted(all_times), 95) * 1000
    everything = {"start": (now - timedelta(days=31)).isoformat(), "end": now.isoformat()}
    per_project = bench.query("usage_by_project", everything)["rows"]
    results["total_rows"] = sum(int(row[1]) for row in per_project)
    bench.stop()
    return results


def report(results: dict[str, Any]) -> str:
    ing, lag, q = results["ingestion"], results["lag"], results["queries"]
    xadd = lag["xadd_to_queryable_ms"]
    lines = [
        f"# Analytics bench — {results['started_at']}", "",
        f"Machine: {os.cpu_count()} cores; service and publisher share them. Embedded chdb.", "",
        "| target | measured | verdict |", "|---|---|---|",
        f"| ingestion ≥ 50,000 events/s, XADD → queryable | {ing['end_to_end_rate_per_s']:,.0f}/s"
        f" (publisher alone {ing['publish_rate_per_s']:,.0f}/s; consumer from a backlog"
        f" {ing['backlog_drain_rate_per_s']:,.0f}/s) |"
        f" {'PASS' if ing['end_to_end_rate_per_s'] >= 50_000 else 'MISS'} |",
        f"| lag p99 ≤ 2 s at 1,000 events/s | p99 {xadd['p99']:.0f} ms (p50 {xadd['p50']:.0f},"
        f" max {xadd['max']:.0f}; {lag['rate_per_s']:,.0f}/s for {lag['events']:,} events) |"
        f" {'PASS' if xadd['p99'] <= 2000 else 'MISS'} |",
        f"| dashboard queries p95 ≤ 500 ms over {q['total_rows']:,} rows |"
        f" p95 {q['all_queries_p95_ms']:.0f} ms over all queries |"
        f" {'PASS' if q['all_queries_p95_ms'] <= 500 else 'MISS'} |", "",
        "| query (HTTP API, 30 runs) | p50 ms | p95 ms | max ms |", "|---|---|---|---|",
    ]  # fmt: skip
    for name, value in q.items():
        if isinstance(value, dict):
            lines.append(
                f"| {name} | {value['p50']:.0f} | {value['p95']:.0f} | {value['max']:.0f} |"
            )
    store = lag["store_ingested_minus_occurred_ms"]
    lines += [
        "",
        f"Store's view of the lag (ingested_at − occurred_at): p50 {store['p50']:.0f} ms,"
        f" p99 {store['p99']:.0f} ms. 10M rows generated in {q['generate_seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--lag-seconds", type=float, default=30.0)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="analytics-bench-") as tmp:
        bench = Bench(Path(tmp), args.redis_url)
        try:
            results = {"started_at": started_at, "options": vars(args),
                       "ingestion": bench_ingestion(bench, args.events),
                       "lag": bench_lag(bench, args.lag_seconds),
                       "queries": bench_queries(bench, args.rows, args.runs)}  # fmt: skip
        finally:
            bench.stop()
            bench.redis.delete(bench.stream, f"{bench.stream}.dlq")
    RESULTS.mkdir(exist_ok=True)
    text = report(results)
    for stem in (f"analytics-{started_at}", "analytics-latest"):
        (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
        (RESULTS / f"{stem}.md").write_text(text)
    print(text)  # noqa: T201 - the bench's report is its output


if __name__ == "__main__":
    main()
