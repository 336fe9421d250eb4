"""The analytics service where chdb is not installed, as in its image (chdb is the
``embedded`` extra of watchllm-analytics, which the image leaves out).

The service runs as a real process (``python -m watchllm_analytics``, through runpy)
whose import system refuses ``chdb`` the way a venv without it does ("No module named
'chdb'"), and says so on stderr whenever something tries. With an embedded DSN it must
stop at start with an error naming the fix, not an ImportError; with a server DSN it
must start and never try to import chdb at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import SERVICE_SECRETS, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REFUSED = "test: import of chdb refused"
# Prepended to the service's start: a meta path finder ahead of every other, so that
# `import chdb` fails here exactly as where the package is not installed.
RUN_WITHOUT_CHDB = f"""
import runpy, sys

class NoChdb:
    def find_spec(self, name, path=None, target=None):
        if name == "chdb" or name.startswith("chdb."):
            print({REFUSED!r}, file=sys.stderr, flush=True)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NoChdb())
assert "chdb" not in sys.modules
runpy.run_module("watchllm_analytics", run_name="__main__", alter_sys=True)
"""


def service_env(redis_url: str, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHLLM_")}
    return {**env, **SERVICE_SECRETS, "REDIS_URL": redis_url,
            "WATCHLLM_ANALYTICS_PORT": str(free_port()),
            "WATCHLLM_ANALYTICS_METRICS_PORT": str(free_port()),
            "WATCHLLM_EVENTS_STREAM": "test.analytics.without-chdb", **variables}  # fmt: skip


@pytest.mark.parametrize("case", ["default-dsn", "chdb-dsn", "data-dir-unwritable"])
def test_an_embedded_store_without_chdb_stops_the_start_naming_the_fix(
    redis_url: str, tmp_path: Path, case: str
) -> None:
    data = tmp_path / "data"
    if case == "data-dir-unwritable":  # as in the image: no folder the service may create
        (tmp_path / "a-file").write_text("")
        data = tmp_path / "a-file" / "data"
    variables = {"WATCHLLM_DATA_DIR": str(data)}
    dsn = f"chdb://{(data / 'clickhouse').resolve()}"
    if case == "chdb-dsn":
        dsn = f"chdb://{tmp_path / 'elsewhere'}"
        variables["WATCHLLM_CLICKHOUSE_URL"] = dsn
    result = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_CHDB],
        cwd=tmp_path, env=service_env(redis_url, **variables),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 3, output  # uvicorn: the application's startup failed
    assert REFUSED in output  # the service did try chdb, and only because of the DSN
    error = "watchllm_analytics.clickhouse.EmbeddedEngineMissing: "
    lines = [x for x in output.splitlines() if x.startswith(error)]
    assert len(lines) == 1, output
    line = lines[0]
    assert f"{dsn} is embedded ClickHouse" in line
    assert "No module named 'chdb'" in line
    assert "pip install 'watchllm-analytics[embedded]'" in line
    assert "set WATCHLLM_CLICKHOUSE_URL to a ClickHouse server" in line
    assert "Application startup failed" in output
    # the error itself, not an ImportError with ours chained after it
    assert "ModuleNotFoundError" not in output and "ImportError" not in output
    assert "During handling of the above exception" not in output


def test_a_server_store_never_imports_chdb(redis_url: str, tmp_path: Path) -> None:
    """Server mode where nothing listens yet: the service starts, retries ClickHouse in the
    background (not ready), drains on SIGTERM, and never asks for chdb."""
    server = f"http://watchllm:secret@127.0.0.1:{free_port()}"
    env = service_env(redis_url, WATCHLLM_CLICKHOUSE_URL=server)
    base = f"http://127.0.0.1:{env['WATCHLLM_ANALYTICS_PORT']}"
    log_path = tmp_path / "analytics.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_WITHOUT_CHDB],
            cwd=tmp_path, env=env, stdout=log_file, stderr=log_file,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                if httpx.get(f"{base}/livez", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        assert httpx.get(f"{base}/readyz", timeout=2.0).status_code == 503
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = log_path.read_text()
    assert "ClickHouse unavailable at start; retrying in the background" in log
    assert "127.0.0.1" in log and "secret" not in log  # the DSN is logged redacted
    assert REFUSED not in log and "chdb" not in log.lower()
