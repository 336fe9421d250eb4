"""``python -m watchllm_dashboard``: Streamlit headless on the configured port, healthy
at ``/_stcore/health``, with the export route beside the app (a whole filtered log
downloaded over HTTP, several pages long); bad settings stop it before Streamlit starts."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.analytics.conftest import make_event
from tests.dashboard.conftest import Stack, Tenant, new_tenant, publish, wait_stored
from tests.support.processes import free_port, start_process
from watchllm_dashboard import export_link
from watchllm_shared.accounts import AccountStore
from watchllm_shared.accounts.sessions import token_hash_of

SECRET = "export-links-are-signed-with-this-secret-in-tests"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
async def tenant(account_store: AccountStore) -> Tenant:
    return await new_tenant(account_store, "download")


def test_the_dashboard_process_serves_the_app_and_the_export(
    dashboard_env: dict[str, str], log_dir: Path, stack: Stack, tenant: Tenant,
    tokens: dict[str, str],
) -> None:  # fmt: skip
    now = datetime.now(UTC)
    events = [make_event(tenant.project_id, now - timedelta(minutes=i)) for i in range(1, 8)]
    publish(stack, events)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**dashboard_env, "WATCHLLM_DASHBOARD_PORT": str(port),
           "WATCHLLM_DASHBOARD_EXPORT_SECRET": SECRET,
           "WATCHLLM_DASHBOARD_EXPORT_PAGE_ROWS": "2"}  # fmt: skip
    process = start_process("watchllm_dashboard", [], env, f"{base}/_stcore/health", base,
                            log_dir / f"dashboard-{port}.log", timeout=90)  # fmt: skip
    try:
        assert httpx.get(f"{base}/_stcore/health", timeout=5).text == "ok"
        page = httpx.get(base, timeout=5)
        assert page.status_code == 200 and "<title>Streamlit</title>" in page.text
        wait_stored(stack, tenant.project_id, len(events))
        filters = {"project_id": tenant.project_id, "start": now - timedelta(hours=1), "end": now}
        grant = export_link.Grant("csv", "requests-download", filters,
                                  token_hash_of(tokens["admin"]),
                                  now + export_link.LIFETIME)  # fmt: skip
        url = f"{base}/{export_link.url(export_link.sign(grant, SECRET.encode()))}"
        reply = httpx.get(url, timeout=30)  # 7 rows, 2 a page: four reads, streamed
        assert reply.status_code == 200, reply.text
        assert reply.headers["transfer-encoding"] == "chunked"
        rows = list(csv.DictReader(io.StringIO(reply.text)))
        newest_first = sorted(events, key=lambda e: e.occurred_at, reverse=True)
        assert [r["request_id"] for r in rows] == [e.request_id for e in newest_first]
        forged = httpx.get(url.replace("?t=", "?t=A"), timeout=30)
        assert forged.status_code == 403 and "not one this dashboard made" in forged.text
    finally:
        assert process.stop() == 0, process.log()  # SIGTERM: a clean stop, exit 0


def test_bad_settings_stop_it_before_streamlit_starts() -> None:
    env = {**os.environ, "WATCHLLM_DASHBOARD_CLICKHOUSE_URL": "chdb:///tmp/nope"}
    done = subprocess.run([sys.executable, "-m", "watchllm_dashboard"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0 and "ClickHouse server URL" in done.stderr
