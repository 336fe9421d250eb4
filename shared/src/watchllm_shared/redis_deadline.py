"""``ReplyDeadline``: the deadline of one ``PackedCommands`` call, which only Redis can miss.

A plain timeout measures the caller's wall clock, and under load most of that clock is
the gateway's own: the wait for one of ``PackedCommands``' connections behind hundreds
of other commands, a reply sitting in the socket while the event loop works through a
long iteration, a write still in the transport's buffer behind earlier ones. Measured
on a gateway at twice its capacity against a healthy Redis (issue 14): of the limiter
asks its 0.5 s deadline cut off, ~95 % had not been sent yet (waiting for a
connection); the others had been sent a few ms earlier, after that wait, or had their
reply waiting in the socket. The gateway then failed open on requests Redis would have
refused. ``watchllm_shared.deadline.Deadline`` (a timer that runs late means the loop is
behind) could not see this: in a busy loop a timer often runs on time, while the time
was lost before it.

So this deadline blames only what Redis did or did not do:

- **Holding a connection** (its handshake, then the command): the call fails when
  Redis has had it for ``seconds`` and nothing on that connection is still ours to do:
  no write still in the transport's buffer, no reply waiting in the socket for the loop
  to read it. A connection whose socket is not open yet is ours too (redis-py's connect
  timeout bounds it).
- **Waiting for a connection**: the queue is ours. The call fails only when another
  call gave up on Redis (the rule above) after this one started waiting, and Redis has
  answered nothing since: when it gets its turn (``PackedCommands`` asks ``holding``
  before it uses the connection), or when its own timer finds it still waiting. In a
  real outage the queue empties at once instead of each call taking a connection in
  turn and waiting ``seconds`` more.

"Nothing" is always looked at twice: again after a ``grace`` that includes an I/O
poll, and each look is taken one loop turn after its timer (``call_soon``), so a
caller whose reply the loop has already read resumes (and ends its deadline) first. A
loop that is behind therefore only delays a real timeout, never makes one; a real
outage still trips on time, since a waiting loop takes its decisions at once.

On expiry the call is cancelled through ``asyncio.timeout`` (``PackedCommands`` then
drops the connection: the reply may still come) and the caller gets ``RedisTimeout``, a
``TimeoutError`` whose message names the command and what Redis did not do.
"""

from __future__ import annotations

import asyncio
import select
from types import TracebackType
from typing import Any, Protocol

GRACE_FRACTION = 0.2
MIN_GRACE_SECONDS = 0.02


class RedisTimeout(TimeoutError):
    """Redis did not answer in time (never: the caller was too busy to read the answer)."""


class RedisProgress(Protocol):
    """What the deadlines of one ``PackedCommands`` share (loop times)."""

    replied_at: float  # Redis's last reply to any command
    gave_up_at: float  # the last time a deadline gave up on Redis


class ReplyDeadline:
    """``async with ReplyDeadline(commands, 0.5, "FCALL f") as d:`` around one call; the
    call reports ``d.sent(connection)`` once it holds a connection and ``d.waiting()``
    when it gives it up to start over."""

    __slots__ = (
        "_progress", "_seconds", "_grace", "_what", "_loop", "_timeout", "_handle",
        "_started", "_sent_at", "_connection", "_confirming", "_reason",
    )  # fmt: skip

    def __init__(self, progress: RedisProgress, seconds: float, what: str) -> None:
        self._progress = progress
        self._seconds = seconds
        self._grace = max(MIN_GRACE_SECONDS, seconds * GRACE_FRACTION)
        self._what = what
        self._handle: asyncio.Handle | None = None
        self._sent_at: float | None = None
        self._connection: Any = None
        self._confirming = False
        self._reason = ""

    async def __aenter__(self) -> ReplyDeadline:
        self._loop = loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout(None)
        await self._timeout.__aenter__()
        self._started = loop.time()
        self._handle = loop.call_at(self._started + self._seconds, self._tick)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as expired:
            raise RedisTimeout(self._reason) from expired

    def holding(self) -> None:
        """The call got its turn for a connection: fail at once if Redis stopped
        answering while it waited (see the module docstring)."""
        if self._outage_while_waiting():
            raise RedisTimeout(self._waited_reason())

    def sent(self, connection: Any) -> None:
        """From now on Redis has the call: its handshake on ``connection`` (a redis-py
        connection), then its command."""
        self._connection = connection
        self._sent_at = self._loop.time()
        self._confirming = False

    def waiting(self) -> None:
        """The call holds no connection (any more): e.g. it starts over on a new one."""
        self._connection = None
        self._sent_at = None
        self._confirming = False

    def _tick(self) -> None:
        # Decide after the callbacks already queued: callers whose replies the loop has
        # read resume first, and one of them may be ours.
        self._handle = self._loop.call_soon(self._decide)

    def _decide(self) -> None:
        now = self._loop.time()
        progress = self._progress
        if self._sent_at is None:
            if not self._outage_while_waiting():
                self._confirming = False
                self._arm(now + self._seconds)
                return
            reason = self._waited_reason()
        else:
            if now < self._sent_at + self._seconds:
                self._arm(self._sent_at + self._seconds)
                return
            if _still_ours(self._connection):
                self._confirming = False
                self._arm(now + self._grace)
                return
            reason = f"Redis did not answer {self._what} within {self._seconds:g} s"
        if not self._confirming:  # look once more, after a grace and an I/O poll
            self._confirming = True
            self._arm(now + self._grace)
            return
        self._handle = None
        self._reason = reason
        if self._sent_at is not None:
            progress.gave_up_at = now
        self._timeout.reschedule(now)  # cancels the call; __aexit__ raises RedisTimeout

    def _outage_while_waiting(self) -> bool:
        gave_up = self._progress.gave_up_at
        return gave_up >= self._started and self._progress.replied_at < gave_up

    def _waited_reason(self) -> str:
        return f"Redis stopped answering while {self._what} waited for a connection"

    def _arm(self, when: float) -> None:
        self._handle = self._loop.call_at(when, self._tick)


def _still_ours(connection: Any) -> bool:
    """True while the delay is on our side of ``connection``: no socket yet, a write not
    flushed to it, or a reply waiting in it that the loop has not read."""
    writer = getattr(connection, "_writer", None)  # redis-py's StreamWriter, once open
    if writer is None:
        return True
    try:
        transport = writer.transport
        if transport.get_write_buffer_size() > 0:
            return True
        sock = transport.get_extra_info("socket")
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
    except (AttributeError, OSError, ValueError):
        return False
    return bool(readable)
