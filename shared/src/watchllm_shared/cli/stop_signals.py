"""SIGTERM and SIGINT stop ``watchllm up``: they raise ``KeyboardInterrupt`` from the
first step on, so its ``finally`` blocks stop whatever was started — also while
services are still starting.

Without this a SIGTERM during start-up ended ``up`` at once and left every child running
(they run in sessions of their own, so nothing else stops them), and the next ``up``
then failed on the cache index's lock. SIGINT explicitly too: a shell that started
``up`` in the background ignores it. A second signal during the clean-up is ignored, so
it cannot cut the clean-up short (SIGKILL still can).

One window is held shut: a ``KeyboardInterrupt`` raised inside ``subprocess.Popen``
after the fork, but before ``Popen`` returns, leaves a child running that no one holds a
handle to, so no one stops it. Code that creates a child wraps the call in
``spawning()``: a signal landing there is held and raised as soon as the handle is kept.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_holding = 0
_pending = False


def install() -> None:
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)


def _on_stop_signal(signum: int, frame: object) -> None:
    global _pending
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _holding:
        _pending = True
        return
    raise KeyboardInterrupt


@contextmanager
def spawning() -> Iterator[None]:
    """Hold a stop signal while a child process is created and its handle stored."""
    global _holding, _pending
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
    if _holding == 0 and _pending:
        _pending = False
        raise KeyboardInterrupt
