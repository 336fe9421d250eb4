"""When ``watchllm up`` restarts a process that exited, and when it gives up.

Pure bookkeeping with the clock passed in (tests drive it with a fake clock):

- each unexpected exit waits a backoff before the restart: ``first_backoff_seconds``
  (0.5 s), doubling to at most ``max_backoff_seconds`` (30 s);
- a run that lasted ``stable_after_seconds`` (60 s) or longer resets the backoff: a
  process that crashes once a day restarts after 0.5 s each time;
- the ``crash_limit``-th exit (5) within ``crash_window_seconds`` (300 s) gives up: the
  process is left down (a crash loop would otherwise spin forever and hide the cause
  in a log that rotates past it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    first_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    crash_limit: int = 5
    crash_window_seconds: float = 300.0
    stable_after_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.crash_limit < 1:
            raise ValueError("crash_limit must be at least 1")
        if not 0 < self.first_backoff_seconds <= self.max_backoff_seconds:
            raise ValueError("need 0 < first_backoff_seconds <= max_backoff_seconds")

    def describe(self) -> str:
        minutes = self.crash_window_seconds / 60
        return f"{self.crash_limit} exits in {minutes:g} min"


@dataclass
class CrashHistory:
    """One process's exits under ``policy``."""

    policy: RestartPolicy
    _exits: deque[float] = field(default_factory=deque)
    _next_backoff: float | None = None

    @property
    def recent_exits(self) -> int:
        return len(self._exits)

    def on_exit(self, now: float, started_at: float) -> float | None:
        """Record an exit at ``now`` of a run started at ``started_at``; the seconds to
        wait before restarting, or ``None`` to give up."""
        policy = self.policy
        if self._next_backoff is None or now - started_at >= policy.stable_after_seconds:
            self._next_backoff = policy.first_backoff_seconds
        self._exits.append(now)
        while self._exits and now - self._exits[0] > policy.crash_window_seconds:
            self._exits.popleft()
        if len(self._exits) >= policy.crash_limit:
            return None
        delay = self._next_backoff
        self._next_backoff = min(delay * 2, policy.max_backoff_seconds)
        return delay
