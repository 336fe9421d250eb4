"""Dashboard bench: every page rendered against 1M request rows (`make bench-dashboard`).

One busy project holds all the rows (30 days, 20 keys, five models), so every page
reads a 1M-row slice. The analytics service serves the reads from embedded chdb (the
default read path); Postgres and Redis are the real servers (a fresh database). Each
page is the real app script under Streamlit's AppTest, signed in as an admin, with the
dashboard's result cache off, timed from run to rendered elements. Target: ≤ 2 s per
page. Report: tests/bench/results/dashboard-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from streamlit.testing.v1 import AppTest

import watchllm_dashboard
from tests.support.processes import SERVICE_SECRETS, free_port, start_process
from tests.support.servers import fresh_database
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_analytics.store import open_store
from watchllm_dashboard.data import export
from watchllm_dashboard.data.analytics import ServiceReader
from watchllm_shared.accounts import AccountStore, Plan, Role, SessionStore, UserStore
from watchllm_shared.accounts import migrate as migrations

RESULTS = Path(__file__).parent / "results"
APP = str(Path(watchllm_dashboard.__file__).with_name("app.py"))
TARGET_S = 2.0
PASSWORD = "bench password 0123456789"
GENERATE = """
INSERT INTO requests (event_id, occurred_at, schema_version, request_id, project_id, key_id,
  model, provider, endpoint, http_status, status, error_type, cache, cache_similarity, stream,
  prompt_tokens, completion_tokens, cost_usd, cost_saved_usd, latency_ms, trace_id,
  upstream_attempts)
SELECT generateUUIDv4(number), now64(3) - toIntervalMillisecond(rand64(1) % 2592000000), 1,
  hex(number), {project:UUID}, {keys:Array(UUID)}[number % 20 + 1],
  ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1', 'claude-haiku-4-5', 'claude-sonnet-4-5'][rand(2) % 5 + 1],
  'openai', '/v1/chat/completions',
  multiIf(rand(3) % 50 = 0, 502, rand(3) % 50 = 1, 429, 200),
  multiIf(rand(3) % 50 = 0, 'upstream_error', rand(3) % 50 = 1, 'rate_limited', 'ok'),
  multiIf(rand(3) % 50 = 0, 'upstream_5xx', rand(3) % 50 = 1, 'rate_limit_exceeded', ''),
  ['hit', 'miss', 'bypass'][rand(4) % 3 + 1],
  if(rand(4) % 6 = 0, 0.9 + (rand(9) % 100) / 1000, NULL), rand(5) % 4 = 0,
  rand(6) % 4000, rand(7) % 1500,
  toDecimal128(rand(6) % 4000, 12) * toDecimal128('0.00000015', 12),
  if(rand(4) % 3 = 0, toDecimal128('0.0003', 12), toDecimal128(0, 12)),
  20 + rand(8) % 3000, '', 1
FROM numbers({count:UInt64})"""
# Several values of several filters at once (Requests), all pushed into one query.
SEVERAL = {"requests_status": ["4xx", "5xx"], "requests_cache": ["semantic", "miss"],
           "requests_stream": ["yes"]}  # fmt: skip
PAGES = ("Overview", "Requests", "Cache", "Rate limits", "API keys", "Projects & settings",
         "Health")  # fmt: skip


async def _accounts(database_url: str) -> tuple[str, uuid.UUID, list[uuid.UUID], str]:
    """A project with 20 keys and a signed-in admin: (project, id, key ids, token)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        store = AccountStore(pool, actor="bench")
        project = await store.create_project("busy-project", Plan.PRO)
        keys = [(await store.create_key(project.name, f"key-{i:02d}")).key.id for i in range(20)]
        await UserStore(pool, actor="bench").create_user("bench-admin", PASSWORD, Role.ADMIN)
        token = (await SessionStore(pool).sign_in("bench-admin", PASSWORD)).token
        return project.name, project.id, keys, token
    finally:
        await pool.close()


def _generate(data_dir: Path, project: uuid.UUID, keys: list[uuid.UUID], rows: int) -> float:
    started = time.monotonic()
    store = open_store(AnalyticsSettings(data_dir=data_dir))
    store.writer_client.command(GENERATE, parameters={"project": project, "keys": keys,
                                                      "count": rows})  # fmt: skip
    store.close()
    return time.monotonic() - started


def _render(token: str, project: str, page: str, window: str, **state: Any) -> float:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in {"auth_token": token, "page": page, "project": project, "range": window,
                       **state}.items():  # fmt: skip
        at.session_state[key] = value
    started = time.monotonic()
    at.run()
    elapsed = time.monotonic() - started
    if at.exception:
        raise RuntimeError(f"{page}: {[e.value for e in at.exception]}")
    if not at.header or at.header[0].value != page:
        raise RuntimeError(f"{page} did not render: {[h.value for h in at.header]}")
    return elapsed


def _cases(keys: list[uuid.UUID], key_labels: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for window in ("Last 24 hours", "Last 30 days"):
        cases += [(page, window, {}) for page in PAGES]
    cases += [
        ("Overview", "Last 30 days", {"overview_model": "gpt-4o"}),
        ("Overview", "Last 30 days", {"overview_key": key_labels[0]}),
        ("Requests", "Last 30 days", {"requests_page": 2000}),
        ("Requests", "Last 30 days", {"requests_status": ["429"]}),
        ("Requests", "Last 30 days", SEVERAL),
        ("Requests", "Last 30 days", {"requests_search": "AB"}),  # ids starting with it
    ]
    return cases


def bench(rows: int, runs: int, redis_url: str, admin_url: str) -> dict[str, Any]:
    results: dict[str, Any] = {"rows": rows, "runs": runs, "target_s": TARGET_S,
                               "load_before": os.getloadavg()[0]}  # fmt: skip
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dash-bench-")))
        database_url = stack.enter_context(fresh_database(admin_url, "watchllm_bench"))
        migrations.upgrade(database_url)
        project, project_id, keys, token = asyncio.run(_accounts(database_url))
        results["generate_seconds"] = _generate(data_dir, project_id, keys, rows)
        port = free_port()
        analytics = start_process(
            "watchllm_analytics", [], {"REDIS_URL": redis_url, "WATCHLLM_DATA_DIR": str(data_dir),
            "WATCHLLM_ANALYTICS_PORT": str(port), "WATCHLLM_EVENTS_STREAM": f"bench.dash.{port}",
            "WATCHLLM_ANALYTICS_METRICS_PORT": str(free_port()), **SERVICE_SECRETS},
            f"http://127.0.0.1:{port}/readyz", f"http://127.0.0.1:{port}",
            data_dir / "analytics.log", timeout=120,
        )  # fmt: skip
        stack.callback(analytics.stop)
        os.environ.update({
            "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "WATCHLLM_ANALYTICS_URL": analytics.url, "WATCHLLM_DASHBOARD_CACHE_SECONDS": "0",
            **SERVICE_SECRETS,
            "WATCHLLM_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",  # none: a fast refusal
        })  # fmt: skip
        labels = [f"key-{i:02d} ({p}…)" for i, p in enumerate(_prefixes(database_url, keys))]
        _render(token, project, "Overview", "Last 24 hours")  # warm-up: imports, first connect
        timings: list[dict[str, Any]] = []
        for page, window, state in _cases(keys, labels):
            times = [_render(token, project, page, window, **state) for _ in range(runs)]
            name = page + "".join(f", {k.split('_', 1)[1]}={v}" for k, v in state.items())
            timings.append({"page": name, "range": window, "median_s": statistics.median(times),
                            "max_s": max(times)})  # fmt: skip
        results["pages"] = timings
        results["load_after"] = os.getloadavg()[0]  # the pages' time: the exports come after
        results["exports"] = _exports(analytics.url, project_id)
        results["slowest_s"] = max(t["max_s"] for t in timings)
        results["verdict"] = "PASS" if results["slowest_s"] <= TARGET_S else "MISS"
        import streamlit as st

        st.cache_resource.clear()  # close the app's pool before the database is dropped
    return results


def _exports(url: str, project_id: uuid.UUID) -> list[dict[str, Any]]:
    """The Requests page's export of every request of the last 30 days, timed from the
    first page read to the last byte, as the export route streams it (page by page,
    nothing kept): its rows, its size, and the most it held at once (one page's bytes)."""
    reader = ServiceReader(url, SERVICE_SECRETS["WATCHLLM_ANALYTICS_QUERY_TOKEN"], 60)
    now = datetime.now(UTC)
    filters = {"project_id": project_id, "start": now - timedelta(days=30), "end": now}
    timed: list[dict[str, Any]] = []
    try:
        for kind in export.KINDS:
            started = time.monotonic()
            size = largest = lines = 0
            for chunk in export.encoded(export.pages(reader, filters), kind):
                size, largest = size + len(chunk), max(largest, len(chunk))
                lines += chunk.count(b"\n")
            timed.append({"kind": kind, "rows": lines - (kind == "csv"), "seconds":
                          time.monotonic() - started, "megabytes": size / 1e6,
                          "largest_chunk_mb": largest / 1e6})  # fmt: skip
    finally:
        reader.close()
    return timed


def _prefixes(database_url: str, keys: list[uuid.UUID]) -> list[str]:
    async def fetch() -> list[str]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT id, display_prefix FROM api_keys WHERE id = ANY($1)", keys
            )
        finally:
            await connection.close()
        prefix = {r["id"]: r["display_prefix"] for r in rows}
        return [prefix[k] for k in keys]

    return asyncio.run(fetch())


def report(results: dict[str, Any]) -> str:
    lines = [
        f"# Dashboard bench — {results['started_at']}", "",
        f"{results['rows']:,} request rows in one project over 30 days (generated in"
        f" {results['generate_seconds']:.0f} s), read through the analytics service (embedded"
        " chdb); Postgres and Redis real; each page rendered by the real app under AppTest,"
        f" {results['runs']} runs, the dashboard's result cache off. Machine: 2 cores, shared"
        f" (1-minute load average {results['load_before']:.1f} before the pages,"
        f" {results['load_after']:.1f} after).",
        "", "| target | measured | verdict |", "|---|---|---|",
        f"| every page renders in ≤ {TARGET_S:.0f} s with {results['rows']:,} rows | slowest"
        f" {results['slowest_s']:.2f} s | {results['verdict']} |",
        "", "| page | range | median s | max s |", "|---|---|---|---|",
    ]  # fmt: skip
    lines += [f"| {t['page']} | {t['range']} | {t['median_s']:.2f} | {t['max_s']:.2f} |"
              for t in results["pages"]]  # fmt: skip
    lines += ["", "Export (Requests, every request of the last 30 days, streamed"
              f" {export.PAGE_ROWS:,} rows a page):"]  # fmt: skip
    lines += [f"- {e['kind'].upper()}: {e['rows']:,} rows in {e['seconds']:.1f} s,"
              f" {e['megabytes']:.0f} MB; at most {e['largest_chunk_mb']:.1f} MB held at once"
              for e in results.get("exports", [])]  # fmt: skip
    lines += ["", "Health: the gateway is not running in this bench (its page shows that at"
              " once); its normal cost is one HTTP GET."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get(
            "WATCHLLM_TEST_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        ),
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "WATCHLLM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = {"started_at": started_at, **bench(args.rows, args.runs, args.redis_url,
                                                  args.postgres_url)}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard-latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "dashboard-latest.md").write_text(report(results))
    print(report(results))  # noqa: T201 - the bench's output


if __name__ == "__main__":
    main()
