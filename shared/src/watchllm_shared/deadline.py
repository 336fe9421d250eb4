"""``Deadline``: a timeout for a store call that does not fire because *we* are late.

asyncio runs a timer at the first loop iteration after it is due, and in that iteration
timers run before the I/O poll. When the loop is busy (a burst of requests on a small
machine), the store's reply can sit in the socket while the deadline passes: the timer
then cancels a call that succeeded. For the limiter that is the worst outcome: Redis
counted the request, and the gateway applies its failure policy anyway (fail-open
admitted 55 requests against a limit of 40 in a burst on 2 cores).

So the deadline looks at how late its own timer ran. Late by more than
``lag_tolerance``: the loop is behind, not the store, and the deadline moves on by the
tolerance (this iteration's I/O poll reads the reply, if there is one). It fires when it
runs on time (the loop keeps up, so the store really has not answered) or at
``hard_factor`` × the timeout, whatever the loop does. A real outage still trips it on
time: a waiting loop is an idle loop.

Expiry goes through ``asyncio.timeout``'s own machinery (``reschedule``), so the
caller sees ``TimeoutError`` and only this cancellation is taken back.

What it cannot see: time lost before its timer was due (waiting for a connection
behind other callers, a loop that was behind earlier), since a timer in a busy loop
often runs on time. For Redis calls through ``PackedCommands`` use ``reply_within``
(``redis_deadline.ReplyDeadline``), which judges Redis by what it did instead; the
limiter ask moved there after this deadline let an overloaded gateway fail open.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

LAG_TOLERANCE_SECONDS = 0.02
HARD_FACTOR = 10.0


class Deadline:
    """``async with Deadline(0.5): await call()`` raises ``TimeoutError`` when the call
    took longer than 0.5 s of the loop's attention (see the module docstring)."""

    __slots__ = (
        "_seconds",
        "_tolerance",
        "_hard_factor",
        "_loop",
        "_timeout",
        "_due",
        "_give_up_at",
        "_handle",
    )

    def __init__(
        self,
        seconds: float,
        lag_tolerance: float = LAG_TOLERANCE_SECONDS,
        hard_factor: float = HARD_FACTOR,
    ) -> None:
        self._seconds = seconds
        self._tolerance = lag_tolerance
        self._hard_factor = hard_factor
        self._handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> Deadline:
        self._loop = loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout(None)
        await self._timeout.__aenter__()
        now = loop.time()
        self._give_up_at = now + self._hard_factor * self._seconds
        self._due = now + self._seconds
        self._handle = loop.call_at(self._due, self._check)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        await self._timeout.__aexit__(exc_type, exc, tb)

    def _check(self) -> None:
        now = self._loop.time()
        if now - self._due > self._tolerance and now < self._give_up_at:
            self._due = now + self._tolerance
            self._handle = self._loop.call_at(self._due, self._check)
            return
        self._handle = None
        self._timeout.reschedule(now)  # expires now: cancels the task, raises TimeoutError
