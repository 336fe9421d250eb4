"""`watchllm up` on a machine with no Redis or Postgres URLs: what a new user does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import free_port, up_ports

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WATCHLLM = str(Path(sys.executable).with_name("watchllm"))


def _env(tmp_path: Path, gateway_port: int, fake_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        up_ports(),
        WATCHLLM_DATA_DIR=str(tmp_path / "data"),
        WATCHLLM_GATEWAY_PORT=str(gateway_port),
        WATCHLLM_FAKE_PROVIDER_PORT=str(fake_port),
    )
    return env


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered:\n{log.read_text()}")


def _requests_recorded(port: str, project_id: str, timeout: float = 15) -> int:
    now = datetime.now(UTC)
    params = {"project_id": project_id, "start": (now - timedelta(hours=1)).isoformat(),
              "end": (now + timedelta(hours=1)).isoformat()}  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/queries/project_totals",
                            json=params, timeout=5).json()  # fmt: skip
        columns = [c["name"] if isinstance(c, dict) else c for c in answer["columns"]]
        requests = int(answer["rows"][0][columns.index("requests")]) if answer["rows"] else 0
        if requests or time.monotonic() > deadline:
            return requests
        time.sleep(0.2)


def test_up_runs_everything_embedded_and_a_key_gets_a_completion(tmp_path: Path) -> None:
    gateway_port, fake_port = free_port(), free_port()
    env = _env(tmp_path, gateway_port, fake_port)
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen([WATCHLLM, "up", "--fake-provider"], env=env, stdout=out, stderr=out)
    try:
        _wait_for(f"http://127.0.0.1:{gateway_port}/readyz", up, log, timeout=90)
        run = {"env": env, "check": True, "capture_output": True, "text": True}
        created = subprocess.run([WATCHLLM, "projects", "create", "demo"], **run)  # type: ignore[call-overload]
        project_id = created.stdout.strip().rsplit("id=", 1)[1]
        key = subprocess.run(  # type: ignore[call-overload]
            [WATCHLLM, "keys", "create", "--project", "demo", "--quiet"], **run
        ).stdout.strip()
        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{gateway_port}/v1", api_key=key, max_retries=0
        ) as sdk:
            answer = sdk.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "first light"}]
            )
        assert answer.choices[0].message.content.startswith("Echo: first light")
        # The limiter runs too: the FREE plan's quota is on the answer's headers.
        health = httpx.get(f"http://127.0.0.1:{gateway_port}/health").json()
        services = health["services"]
        assert services["limiter"] == services["cache"] == services["analytics"] == "up"
        assert services["clickhouse"] == "connected" and services["qdrant"] == "connected"
        # The request went gateway → events stream → analytics → ClickHouse, and the
        # dashboard's query sees it.
        assert _requests_recorded(env["WATCHLLM_ANALYTICS_PORT"], project_id) == 1
        assert "gateway:   http://127.0.0.1:" in log.read_text()
        dashboard = f"http://127.0.0.1:{env['WATCHLLM_DASHBOARD_PORT']}/_stcore/health"
        _wait_for(dashboard, up, log, timeout=60)  # started last, after runtime.json
        assert httpx.get(dashboard, timeout=5).text == "ok"
    finally:
        up.send_signal(signal.SIGINT)
        returncode = up.wait(timeout=30)
    assert returncode == 0, log.read_text()
    assert log.read_text().rstrip().endswith("stopped")
    assert not (tmp_path / "data" / "runtime.json").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{gateway_port}/livez", timeout=1)


def _started_from(data_dir: Path) -> list[str]:
    """Processes still running that `up` started for ``data_dir`` (they inherit its
    WATCHLLM_DATA_DIR), as 'pid cmdline'."""
    marker = f"WATCHLLM_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{entry.name} {cmdline[:120]}")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


def test_sigterm_while_services_start_stops_everything_and_up_starts_again(
    tmp_path: Path,
) -> None:
    gateway_port = free_port()
    env = _env(tmp_path, gateway_port, free_port())
    data_dir, log = tmp_path / "data", tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen([WATCHLLM, "up", "--fake-provider"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while not (data_dir / "logs" / "cache.log").exists():  # the stores are up, services starting
        assert up.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    up.send_signal(signal.SIGTERM)
    up.wait(timeout=60)
    assert _started_from(data_dir) == [], log.read_text()
    # The folder is usable at once: nothing left holds the index or the stores.
    with log.open("wb") as out:
        again = subprocess.Popen([WATCHLLM, "up", "--fake-provider"], env=env, stdout=out,
                                 stderr=out)  # fmt: skip
    try:
        _wait_for(f"http://127.0.0.1:{gateway_port}/readyz", again, log, timeout=90)
    finally:
        again.send_signal(signal.SIGTERM)
        returncode = again.wait(timeout=60)
    assert returncode == 0 and log.read_text().rstrip().endswith("stopped"), log.read_text()
    assert _started_from(data_dir) == []
