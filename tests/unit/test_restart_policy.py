"""When `watchllm up` restarts a process and when it gives up (a clock we drive)."""

from __future__ import annotations

import pytest

from watchllm_shared.cli.restart_policy import CrashHistory, RestartPolicy

pytestmark = pytest.mark.unit


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_backoff_seconds=0.5, max_backoff_seconds=3.0, crash_limit=100)
    history, now, delays = CrashHistory(policy), 0.0, []
    for _ in range(6):
        delay = history.on_exit(now, started_at=now - 1.0)  # each run lasted 1 s
        assert delay is not None
        delays.append(delay)
        now += delay + 1.0
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_a_stable_run_resets_the_backoff() -> None:
    policy = RestartPolicy(first_backoff_seconds=0.5, stable_after_seconds=60, crash_limit=100)
    history = CrashHistory(policy)
    assert history.on_exit(10.0, started_at=9.0) == 0.5
    assert history.on_exit(12.0, started_at=11.0) == 1.0
    assert history.on_exit(200.0, started_at=12.5) == 0.5  # ran 187.5 s: back to the start


def test_the_nth_exit_within_the_window_gives_up() -> None:
    policy = RestartPolicy(crash_limit=3, crash_window_seconds=60)
    history = CrashHistory(policy)
    assert history.on_exit(0.0, started_at=-1.0) is not None
    assert history.on_exit(10.0, started_at=9.0) is not None
    assert history.on_exit(20.0, started_at=19.0) is None  # 3 exits in 20 s


def test_exits_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy(crash_limit=3, crash_window_seconds=60)
    history = CrashHistory(policy)
    for now in (0.0, 50.0, 111.0, 160.0):  # never 3 within 60 s
        assert history.on_exit(now, started_at=now - 1.0) is not None
    assert history.recent_exits == 2


@pytest.mark.parametrize(
    "kwargs",
    [{"crash_limit": 0}, {"first_backoff_seconds": 0}, {"first_backoff_seconds": 5,
                                                        "max_backoff_seconds": 1}],
)  # fmt: skip
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]
