"""A whole ``watchllm up --fake-provider`` stack for a test: its own data folder and
free ports, started as an operator starts it, stopped (SIGTERM) when the context exits.

Ready means ``/health`` says ``healthy``: every service's heartbeat has arrived, not
only the gateway's ``/readyz``. Waits poll the state with generous deadlines (a 3x
slower machine must pass), never sleep for a guessed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.support.processes import up_ports
from watchllm_shared.cli.local_secrets import ANALYTICS_QUERY_TOKEN, read_secret

WATCHLLM = str(Path(sys.executable).with_name("watchllm"))
START_TIMEOUT = 180.0


@dataclass
class Project:
    name: str
    project_id: str
    key: str


@dataclass
class EmbeddedStack:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    data_dir: Path
    log_path: Path

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.env['WATCHLLM_GATEWAY_PORT']}"

    @property
    def analytics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['WATCHLLM_ANALYTICS_PORT']}"

    @property
    def analytics_auth(self) -> dict[str, str]:
        """The header the analytics query API wants: the token `up` generated."""
        return {"Authorization": f"Bearer {analytics_token(self.data_dir)}"}

    def stored_request_ids(self, project_id: str, since: datetime) -> Counter[str]:
        """Every request id analytics stored for the project since ``since``, with how
        often (read while rows still arrive, pages shift: read once they settled)."""
        params = {"project_id": project_id, "limit": 500, "start": since.isoformat(),
                  "end": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}  # fmt: skip
        ids: Counter[str] = Counter()
        for offset in range(0, 10_000_000, 500):
            page = httpx.post(f"{self.analytics_url}/v1/queries/project_request_log",
                              json={**params, "offset": offset}, headers=self.analytics_auth,
                              timeout=60).json()  # fmt: skip
            columns = [c["name"] if isinstance(c, dict) else c for c in page["columns"]]
            ids.update(str(row[columns.index("request_id")]) for row in page["rows"])
            if len(page["rows"]) < 500:
                break
        return ids

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def watchllm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``watchllm ARGS`` against this stack (the CLI finds it by its data folder)."""
        return subprocess.run([WATCHLLM, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip

    def create_project(self, name: str, plan: str = "FREE", cache: bool = True) -> Project:
        created = self._ok("projects", "create", name, "--plan", plan)
        project_id = created.strip().rsplit("id=", 1)[1]
        if not cache:
            self._ok("cache", "settings", name, "--disable")
        key = self._ok("keys", "create", "--project", name, "--quiet").strip()
        return Project(name, project_id, key)

    def _ok(self, *args: str) -> str:
        done = self.watchllm(*args)
        assert done.returncode == 0, f"watchllm {' '.join(args)}: {done.stderr}"
        return done.stdout

    def service_pids(self, module: str) -> list[int]:
        """Processes of ``python -m <module>`` this stack started (they inherit its
        ``WATCHLLM_DATA_DIR``)."""
        marker = f"WATCHLLM_DATA_DIR={self.data_dir}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if marker in environ and module.encode() in cmdline:
                found.append(int(entry.name))
        return found

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"watchllm up exited:\n{self.log()}"
            try:
                report = httpx.get(f"{self.gateway_url}/health", timeout=5).json()
                if report.get("status") == "healthy":
                    return
                last = str(report)
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise AssertionError(f"never healthy ({last}):\n{self.log()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def analytics_token(data_dir: Path) -> str:
    """The query token a ``watchllm up`` on ``data_dir`` generated (and keeps)."""
    token = read_secret(data_dir, ANALYTICS_QUERY_TOKEN)
    assert token is not None, f"no analytics token under {data_dir}"
    return token


def stack_env(root: Path) -> dict[str, str]:
    """The environment of a stack under ``root``: its data folder and free ports."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(up_ports())
    env["WATCHLLM_DATA_DIR"] = str(root / "data")
    return env


def start_up(root: Path, env: dict[str, str], own_group: bool = False) -> EmbeddedStack:
    """``watchllm up --fake-provider`` (not waited for). ``own_group``: in a process
    group of its own, as a terminal runs it, so a test can signal the whole group."""
    log_path = root / "up.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen([WATCHLLM, "up", "--fake-provider"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, process_group=0 if own_group
                                   else None)  # fmt: skip
    return EmbeddedStack(process, env, root / "data", log_path)


@contextmanager
def embedded_stack(
    root: Path, env: dict[str, str] | None = None, own_group: bool = False
) -> Iterator[EmbeddedStack]:
    """``watchllm up --fake-provider`` with its data under ``root``, healthy. The same
    ``env`` again starts a stack on the same data and ports."""
    stack = start_up(root, env or stack_env(root), own_group)
    try:
        stack.wait_healthy()
        yield stack
    finally:
        stack.stop()
