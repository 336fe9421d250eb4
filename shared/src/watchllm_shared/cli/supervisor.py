"""``watchllm up``'s process supervisor: every service replica is restarted on its own
when it exits, and the processes stop in order.

What it does (``Supervisor.tick`` runs every 0.2 s from ``up``'s main loop):

- A service process (each replica on its own) that exits unexpectedly — a crash, an
  OOM kill, any exit code — is started again after its backoff (``restart_policy``:
  0.5 s doubling to 30 s). Nothing else is touched: the gateway keeps serving through
  the failure modes written in the services (limiter fail-open, cache miss, events
  waiting in Redis until analytics and the limiter are back; consumer names are stable,
  so a restarted replica takes its own pending entries back).
- A process that exits ``crash_limit`` times within the window is left down, with a
  message naming its log. It never stops the others, the gateway included.
- An embedded store (Valkey, Postgres) that dies is started again on its data at the
  same address (the services reconnect by themselves): Valkey replays its AOF
  (``appendfsync everysec``: writes of the last second can be lost), Postgres runs
  crash recovery (nothing committed is lost). A store that keeps dying stops
  everything, cleanly, with the reason: nothing can run without it for long.
- Every restart is printed, written into the process's own log, and reported to
  ``/health`` (``contracts/supervision.py``, published by ``supervisor_report``).
- ``stop()``: tier by tier (``ProcessSpec.stop_tier``): the entry points first (the
  gateway finishes its requests and flushes its events into Redis), then the stream
  consumers (they ack what they finished), then the fake provider; each tier gets
  SIGTERM, then SIGKILL after the grace. ``up`` stops the stores after this returns.
  Services run in sessions of their own, and so do the stores: a Ctrl-C or a service
  manager's signal to ``up``'s process group reaches ``up`` alone, which stops the
  rest in that order.

A process that hangs without exiting is not detected here; its heartbeat expires and
``/health`` reports it down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import click
import httpx

from watchllm_shared.cli import stop_signals
from watchllm_shared.cli.restart_policy import CrashHistory, RestartPolicy
from watchllm_shared.contracts.supervision import ProcessState, ProcessStatus, SupervisorReport

_STORE_CHECK_EVERY_SECONDS = 1.0
_LOG_TAIL_LINES = 20


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one process: ``python -m module args`` with ``env`` on top of ours."""

    name: str
    module: str
    args: tuple[str, ...]
    env: dict[str, str]
    url: str
    ready_path: str
    stop_tier: int  # 0 stops first


@dataclass
class Supervised:
    spec: ProcessSpec
    log_path: Path
    history: CrashHistory
    process: subprocess.Popen[bytes] | None = None
    state: ProcessState = "running"
    started_at: float = 0.0
    restart_at: float = 0.0
    restarts: int = 0
    last_exit: int | None = None
    last_exit_at: datetime | None = None

    def status(self) -> ProcessStatus:
        return ProcessStatus(state=self.state, restarts=self.restarts, last_exit=self.last_exit,
                             last_exit_at=self.last_exit_at, log=str(self.log_path))  # fmt: skip


class Store(Protocol):
    """An embedded server (``EmbeddedRedis``, ``EmbeddedPostgres``)."""

    @property
    def log_path(self) -> Path: ...

    def alive(self) -> bool: ...

    def restart(self) -> str: ...


@dataclass
class _WatchedStore:
    name: str
    server: Store
    history: CrashHistory
    started_at: float


class StoreLost(click.ClickException):
    """An embedded store kept dying: ``up`` stops everything."""


@dataclass
class Supervisor:
    data_dir: Path
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    grace_seconds: float = 10.0
    clock: Callable[[], float] = time.monotonic
    say: Callable[[str], None] = click.echo
    on_change: Callable[[SupervisorReport], None] = lambda report: None
    processes: list[Supervised] = field(default_factory=list)
    _stores: list[_WatchedStore] = field(default_factory=list)
    _stores_checked_at: float = float("-inf")

    # -- start ---------------------------------------------------------------------

    def start(self, spec: ProcessSpec) -> Supervised:
        """Start a process (``wait_ready`` waits for it); failures at start are not
        restarted: they are configuration problems, reported by ``wait_ready``."""
        log_path = self.data_dir / "logs" / f"{spec.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        unit = Supervised(spec, log_path, CrashHistory(self.policy))
        self.processes.append(unit)
        self._spawn(unit)
        return unit

    def wait_ready(self, unit: Supervised, timeout: float = 60.0) -> None:
        url, deadline = unit.spec.url + unit.spec.ready_path, time.monotonic() + timeout
        while time.monotonic() < deadline:
            if unit.process is None or unit.process.poll() is not None:
                raise click.ClickException(
                    f"{unit.spec.name} exited at start:\n{log_tail(unit.log_path)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise click.ClickException(
            f"{unit.spec.name} not ready after {timeout:.0f} s:\n{log_tail(unit.log_path)}"
        )

    def watch_store(self, name: str, server: Store) -> None:
        self._stores.append(_WatchedStore(name, server, CrashHistory(self.policy), self.clock()))

    def _spawn(self, unit: Supervised) -> None:
        with unit.log_path.open("ab") as log, stop_signals.spawning():
            unit.process = subprocess.Popen(
                [sys.executable, "-m", unit.spec.module, *unit.spec.args],
                env={**os.environ, **unit.spec.env}, stdout=log, stderr=log,
                start_new_session=True,  # the terminal's signals reach `up` only
            )  # fmt: skip
        unit.state, unit.started_at = "running", self.clock()

    # -- watch ---------------------------------------------------------------------

    def tick(self) -> None:
        """One round: notice exits, restart what is due, check the stores."""
        now, changed = self.clock(), False
        for unit in self.processes:
            if unit.state == "running" and unit.process is not None:
                code = unit.process.poll()
                if code is not None:
                    self._exited(unit, code, now)
                    changed = True
            elif unit.state == "restarting" and now >= unit.restart_at:
                self._restart(unit)
                changed = True
        if now - self._stores_checked_at >= _STORE_CHECK_EVERY_SECONDS:
            self._stores_checked_at = now
            self._check_stores(now)
        if changed:
            self.on_change(self.report())

    def _exited(self, unit: Supervised, code: int, now: float) -> None:
        name = unit.spec.name
        unit.last_exit, unit.last_exit_at = code, datetime.now(UTC)
        delay = unit.history.on_exit(now, unit.started_at)
        if delay is None:
            unit.state = "given_up"
            self.say(
                f"{name} {describe_exit(code)}: it exited {self.policy.describe()}, so it is "
                f"left down. Its log: {unit.log_path}. The other services keep running; "
                f"fix the cause and restart `watchllm up`.\n{log_tail(unit.log_path)}"
            )
            self._note_in_log(unit, f"exited ({describe_exit(code)}); given up")
            return
        unit.state, unit.restart_at = "restarting", now + delay
        self.say(f"{name} {describe_exit(code)}; restarting in {delay:g} s "
                 f"(log: {unit.log_path})")  # fmt: skip

    def _restart(self, unit: Supervised) -> None:
        unit.restarts += 1
        self._note_in_log(unit, f"restart {unit.restarts} after {describe_exit(unit.last_exit)}"
                          if unit.last_exit is not None else "restart")  # fmt: skip
        self._spawn(unit)
        self.say(f"{unit.spec.name} restarted (restart {unit.restarts})")

    def _note_in_log(self, unit: Supervised, what: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with contextlib.suppress(OSError), unit.log_path.open("a") as log:
            log.write(f"--- watchllm up {stamp}: {unit.spec.name} {what} ---\n")

    def _check_stores(self, now: float) -> None:
        for store in self._stores:
            if store.server.alive():
                continue
            delay = store.history.on_exit(now, store.started_at)
            if delay is None:
                raise StoreLost(
                    f"the embedded {store.name} keeps dying ({self.policy.describe()}); "
                    f"stopping everything. Its log: {store.server.log_path}\n"
                    f"{log_tail(store.server.log_path)}"
                )
            self.say(f"{store.name} exited; restarting it on its data in {delay:g} s "
                     f"(log: {store.server.log_path})")  # fmt: skip
            time.sleep(delay)  # the services wait for it meanwhile, as for any outage
            store.server.restart()
            store.started_at = self.clock()
            self.say(f"{store.name} restarted")

    # -- report and stop -----------------------------------------------------------

    def report(self) -> SupervisorReport:
        return SupervisorReport(
            at=datetime.now(UTC), processes={u.spec.name: u.status() for u in self.processes}
        )

    def stop(self) -> None:
        """Tier by tier: SIGTERM, wait up to the grace, SIGKILL what is left."""
        for tier in sorted({unit.spec.stop_tier for unit in self.processes}):
            units = [u for u in self.processes if u.spec.stop_tier == tier]
            for unit in units:
                if unit.process is not None and unit.process.poll() is None:
                    unit.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace_seconds
            for unit in units:
                process = unit.process
                if process is None:
                    continue
                try:
                    process.wait(max(deadline - time.monotonic(), 0.0))
                except subprocess.TimeoutExpired:
                    self.say(f"{unit.spec.name} did not stop within {self.grace_seconds:g} s; "
                             "killing it")  # fmt: skip
                    process.kill()
                    process.wait()
