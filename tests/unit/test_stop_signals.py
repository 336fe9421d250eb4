"""`watchllm up`'s stop signals: a SIGTERM that lands while a child is being created is
held until the child's handle is kept, then stops `up` as usual."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from watchllm_shared.cli import stop_signals


@pytest.fixture
def installed() -> Iterator[None]:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop_signals.install()
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_a_signal_outside_a_spawn_stops_at_once(installed: None) -> None:
    reached = False
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode boundary
            pass
        reached = True
    assert not reached


def test_a_signal_during_a_spawn_waits_until_the_handle_is_kept(installed: None) -> None:
    kept: list[subprocess.Popen[bytes]] = []
    with pytest.raises(KeyboardInterrupt):
        with stop_signals.spawning():
            os.kill(os.getpid(), signal.SIGTERM)  # as if it landed inside Popen
            kept.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        pytest.fail("the held signal was not raised once the spawn was done")
    assert len(kept) == 1  # so whoever stops `up`'s children can stop this one
    kept[0].kill()
    kept[0].wait()


def test_a_second_signal_during_the_clean_up_is_ignored(installed: None) -> None:
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
