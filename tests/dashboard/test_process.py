"""``python -m watchllm_dashboard``: Streamlit headless on the configured port, healthy
at ``/_stcore/health``; bad settings stop it before Streamlit starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, start_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_dashboard_process_serves_the_app(dashboard_env: dict[str, str], log_dir: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**dashboard_env, "WATCHLLM_DASHBOARD_PORT": str(port)}
    process = start_process("watchllm_dashboard", [], env, f"{base}/_stcore/health", base,
                            log_dir / f"dashboard-{port}.log", timeout=90)  # fmt: skip
    try:
        assert httpx.get(f"{base}/_stcore/health", timeout=5).text == "ok"
        page = httpx.get(base, timeout=5)
        assert page.status_code == 200 and "<title>Streamlit</title>" in page.text
    finally:
        assert process.stop() == 0, process.log()


def test_bad_settings_stop_it_before_streamlit_starts() -> None:
    env = {**os.environ, "WATCHLLM_DASHBOARD_CLICKHOUSE_URL": "chdb:///tmp/nope"}
    done = subprocess.run([sys.executable, "-m", "watchllm_dashboard"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0 and "ClickHouse server URL" in done.stderr
