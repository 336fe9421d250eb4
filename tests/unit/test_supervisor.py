"""`watchllm up`'s supervisor on real processes (a small stand-in service), with the
restart clock driven by the test: restarts, giving up, the report, the stop order."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port
from watchllm_shared.cli.restart_policy import RestartPolicy
from watchllm_shared.cli.supervisor import ProcessSpec, Supervised, Supervisor
from watchllm_shared.contracts.supervision import SupervisorReport

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def supervisor(tmp_path: Path, clock: Clock) -> Iterator[Supervisor]:
    said: list[str] = []
    reports: list[SupervisorReport] = []
    policy = RestartPolicy(first_backoff_seconds=1.0, crash_limit=3, crash_window_seconds=60)
    sup = Supervisor(tmp_path, policy, grace_seconds=10.0, clock=clock, say=said.append,
                     on_change=reports.append)  # fmt: skip
    sup.said, sup.reports = said, reports  # type: ignore[attr-defined]
    yield sup
    sup.stop()


def _spec(tmp_path: Path, name: str, tier: int = 0) -> ProcessSpec:
    port = free_port()
    args = (name, str(tmp_path / "stopped"), str(port))
    return ProcessSpec(name, "tests.support.stop_recorder", args, {},
                       f"http://127.0.0.1:{port}", "/readyz", tier)  # fmt: skip


def _start(sup: Supervisor, spec: ProcessSpec) -> Supervised:
    unit = sup.start(spec)
    sup.wait_ready(unit)
    return unit


def _kill(unit: Supervised) -> None:
    assert unit.process is not None
    unit.process.send_signal(signal.SIGKILL)
    unit.process.wait(timeout=30)


def _pid(unit: Supervised) -> int:
    assert unit.process is not None
    return unit.process.pid


def test_a_killed_process_is_restarted_after_its_backoff_and_the_others_keep_running(
    supervisor: Supervisor, clock: Clock, tmp_path: Path
) -> None:
    crashing = _start(supervisor, _spec(tmp_path, "analytics"))
    other = _start(supervisor, _spec(tmp_path, "gateway"))
    first_pid, other_pid = _pid(crashing), _pid(other)

    _kill(crashing)
    supervisor.tick()
    assert crashing.state == "restarting" and crashing.last_exit == -signal.SIGKILL
    assert "analytics killed by SIGKILL; restarting in 1 s" in supervisor.said[-1]  # type: ignore[attr-defined]
    clock.now += 0.9
    supervisor.tick()
    assert crashing.state == "restarting"  # the backoff is not over
    clock.now += 0.2
    supervisor.tick()
    assert crashing.state == "running" and crashing.restarts == 1
    assert _pid(crashing) != first_pid
    supervisor.wait_ready(crashing)  # it serves again
    assert _pid(other) == other_pid and other.process is not None and other.process.poll() is None
    log = crashing.log_path.read_text()
    assert "analytics restart 1 after killed by SIGKILL" in log
    report = supervisor.reports[-1]  # type: ignore[attr-defined]
    assert report.processes["analytics"].restarts == 1
    assert report.processes["analytics"].last_exit == -9
    assert report.processes["gateway"].restarts == 0


def test_a_process_that_keeps_exiting_is_left_down_with_its_log_named(
    supervisor: Supervisor, clock: Clock, tmp_path: Path
) -> None:
    crashing = _start(supervisor, _spec(tmp_path, "cache"))
    other = _start(supervisor, _spec(tmp_path, "gateway"))
    for _ in range(2):
        _kill(crashing)
        supervisor.tick()
        clock.now += 10
        supervisor.tick()
        assert crashing.state == "running"
    _kill(crashing)
    supervisor.tick()  # the third exit within 60 s
    assert crashing.state == "given_up"
    clock.now += 1000
    supervisor.tick()
    assert crashing.state == "given_up" and crashing.restarts == 2  # never started again
    message = supervisor.said[-1]  # type: ignore[attr-defined]
    assert "left down" in message and str(crashing.log_path) in message
    assert other.process is not None and other.process.poll() is None
    assert supervisor.report().given_up == ["cache"]
    httpx.get(other.spec.url + "/readyz", timeout=5).raise_for_status()


def test_stop_goes_tier_by_tier(supervisor: Supervisor, tmp_path: Path) -> None:
    for name, tier in [("consumer", 1), ("gateway", 0), ("provider", 2), ("dashboard", 0)]:
        _start(supervisor, _spec(tmp_path, name, tier))
    supervisor.stop()
    order = (tmp_path / "stopped").read_text().split()
    assert sorted(order[:2]) == ["dashboard", "gateway"]
    assert order[2:] == ["consumer", "provider"]
    assert all(u.process is not None and u.process.returncode == 0 for u in supervisor.processes)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(
    tmp_path: Path, clock: Clock
) -> None:
    sup = Supervisor(tmp_path, grace_seconds=0.5, clock=clock, say=lambda _: None)
    port = free_port()
    stubborn = ProcessSpec("stubborn", "tests.support.stop_recorder",
                           ("stubborn", str(tmp_path / "x"), str(port), "--ignore-sigterm"),
                           {}, f"http://127.0.0.1:{port}", "/readyz", 0)  # fmt: skip
    unit = _start(sup, stubborn)
    started = time.monotonic()
    sup.stop()
    assert unit.process is not None and unit.process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 30  # bounded by the grace, not forever
