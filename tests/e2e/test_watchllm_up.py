"""`watchllm up` stopped while its services start, then started again on the same folder.
(A whole stack answering a first request, and stopping on Ctrl-C, is tested on the
shared stack of ``test_deployment_checks``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
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
