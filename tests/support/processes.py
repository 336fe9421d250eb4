"""Start WatchLLM processes (gateway, fake provider) the way operators do: as separate
processes configured by environment, on free loopback ports, with logs kept to check."""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

# The secrets a deployment must give the services that need them (compose and k8s
# require them; the services refuse to start without): fixed test values, 32+ characters.
SERVICE_SECRETS = {
    "WATCHLLM_ANALYTICS_QUERY_TOKEN": "test-analytics-query-token-0123456789abcdef",
    "WATCHLLM_CACHE_KEY_SECRET": "test-cache-key-secret-0123456789abcdef-0000",
}
# What the test gateways key exact-cache entries with (``contracts.cache_keys``).
CACHE_KEY_SECRET = SERVICE_SECRETS["WATCHLLM_CACHE_KEY_SECRET"].encode()
# What a reader of the analytics query API sends (the dashboard, `watchllm check`).
ANALYTICS_AUTH = {"Authorization": f"Bearer {SERVICE_SECRETS['WATCHLLM_ANALYTICS_QUERY_TOKEN']}"}


# Ports for the servers tests start: below the kernel's ephemeral range (32768+ here),
# so that no client connection of a test running beside it is given the port between
# our check and the server's bind (that race made `watchllm up` fail with "address
# already in use" under two workers), and a slice of its own for each pytest-xdist
# worker, so that two workers never hand out the same port. A random start in the
# slice keeps two sessions without xdist apart, and a port in use is skipped.
_PORTS_FROM, _SLICE = 12_000, 4_000
_SLICES = (32_768 - _PORTS_FROM) // _SLICE
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_slice_start = _PORTS_FROM + (int(_worker[2:] or 0) % _SLICES) * _SLICE
_next_port = itertools.count(random.randrange(_SLICE))


def free_port() -> int:
    """A loopback port nobody listens on, not handed out before in this worker."""
    for _ in range(_SLICE):
        port = _slice_start + next(_next_port) % _SLICE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_slice_start}..{_slice_start + _SLICE - 1}")


def up_ports() -> dict[str, str]:
    """A free port for each port ``watchllm up`` uses (every ``*_port`` setting of the
    CLI: API and metrics ports, the fake provider's, the dashboard's)."""
    from watchllm_shared.cli.settings import CliSettings

    names = [name for name in CliSettings.model_fields if name.endswith("_port")]
    return {f"WATCHLLM_{name.upper()}": str(free_port()) for name in names}


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    metrics_url: str | None = None  # a WatchLLM service's /metrics (its own listener)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_process(
    module: str,
    args: list[str],
    env: dict[str, str],
    ready_url: str,
    base_url: str,
    log_path: Path,
    timeout: float = 30.0,
    wrapper: Sequence[str] = (),
) -> ServiceProcess:
    """Run ``python -m module args`` (under ``wrapper``, e.g. valgrind, if given) and
    wait until ``ready_url`` answers 200."""
    full_env = {**os.environ, **env}
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [*wrapper, sys.executable, "-m", module, *args],
        env=full_env, stdout=log_file, stderr=log_file,
    )  # fmt: skip
    log_file.close()
    service = ServiceProcess(process, base_url, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{module} exited with {process.returncode}:\n{service.log()}")
        try:
            if httpx.get(ready_url, timeout=1.0).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    service.kill()
    raise RuntimeError(f"{module} not ready after {timeout} s:\n{service.log()}")


def start_fake_provider(log_dir: Path, *args: str) -> ServiceProcess:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    return start_process(
        "watchllm_shared.fake_provider", ["--port", str(port), *args], {},
        f"{base}/health", base, log_dir / f"fake-provider-{port}.log",
    )  # fmt: skip


def start_service(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    ready: str = "/readyz",
    timeout: float = 30,
    wrapper: Sequence[str] = (),
) -> ServiceProcess:
    """Run ``python -m watchllm_<name>`` on a free port (``WATCHLLM_<NAME>_PORT``), its
    metrics on another (``WATCHLLM_<NAME>_METRICS_PORT``), with ``SERVICE_SECRETS``
    unless ``env`` says otherwise."""
    port, metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    ports = {f"WATCHLLM_{name.upper()}_PORT": str(port),
             f"WATCHLLM_{name.upper()}_METRICS_PORT": str(metrics_port)}  # fmt: skip
    service = start_process(
        f"watchllm_{name}", [], {**SERVICE_SECRETS, **ports, **env},
        base + ready, base, log_dir / f"{name}-{port}.log", timeout=timeout, wrapper=wrapper,
    )  # fmt: skip
    service.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    return service


def start_gateway(
    env: dict[str, str], log_dir: Path, wrapper: Sequence[str] = (), timeout: float = 30
) -> ServiceProcess:
    return start_service("gateway", env, log_dir, "/livez", timeout, wrapper)


def start_limiter(env: dict[str, str], log_dir: Path) -> ServiceProcess:
    return start_service("limiter", env, log_dir)


def start_cache_service(env: dict[str, str], log_dir: Path) -> ServiceProcess:
    return start_service("cache", env, log_dir, timeout=90)  # loads the embedding model
