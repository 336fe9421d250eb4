"""Hot-path Redis commands: packed by hiredis, sent on connections kept for them.

``redis.asyncio.Redis.execute_command`` spent 122-179 µs of client CPU per command
(round trip included) in a loop of 5,000 on this machine at ~40 % of its quiet speed:
the blocking pool's lock and ``ensure_connection`` check, retry and event-dispatch
wrappers, argument-by-argument packing in Python. The same command packed by hiredis
(in C) on a connection taken from a plain free list: 40-59 µs. ``make bench-limiter``
puts the two asks side by side. The gateway's rate-limit ask and its event XADDs are
on or next to every request's path, so they use this; everything else keeps redis-py.

The connections are redis-py's own (made by the client's pool, so the URL's database,
password, TLS or unix socket apply) and keep its behaviour: connect on first use, a
PING health check when a connection sat idle past ``health_check_interval``, error
replies raised as ``redis.exceptions.ResponseError``, socket errors as
``redis.exceptions.ConnectionError``.

Failure modes, enforced here:
- A connection that fails mid-command (socket error, cancellation by the caller's
  deadline) is disconnected and dropped, never reused: its reply may still arrive and
  would answer the next command. An error *reply* (``ResponseError``) leaves the
  connection in step and it is kept.
- A *reused* connection that fails with a connection error (Redis restarted since it
  was last used) is retried once on a fresh connection. The command may then run
  twice if Redis executed it before the socket broke; callers only send commands where
  that errs on the safe side (a rate-limit ask counted twice refuses earlier, never
  admits more).
- ``call_many`` pipelines: one write, every reply read even when some are errors, then
  the first error raised; a retry on a stale connection sends the whole batch again.
  ``call_many(..., raise_errors=False)`` raises no error reply: each failed command's
  ``ResponseError`` stands in its place among the replies, so a caller can resend only
  the commands that failed (the others did run). A connection error still raises: which
  commands ran before it is unknown.
- At most ``max_connections`` commands (or pipelines) are in flight; more wait for a free slot (the
  caller's deadline bounds the wait).
- ``reply_within=`` on ``call`` is a ``ReplyDeadline`` (``redis_deadline``): it
  fails the call with ``RedisTimeout`` only for what Redis did not do (answer anything
  while the call waited for a slot, or answer this command once sent), never for the
  wait a busy gateway causes itself. A caller's own ``asyncio.timeout`` still measures
  its wall clock, waits included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from watchllm_shared.redis_deadline import ReplyDeadline

Argument = str | bytes | int | float


class PackedCommands:
    def __init__(self, redis: aioredis.Redis, max_connections: int = 64) -> None:
        self._pool = redis.connection_pool
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[AbstractConnection] = []
        # For ``ReplyDeadline`` (loop times): Redis's last reply to any command here, and
        # the last time a deadline gave up on Redis.
        self.replied_at = float("-inf")
        self.gave_up_at = float("-inf")

    async def call(self, *args: Argument, reply_within: float | None = None) -> Any:
        """Run one command; its reply as redis-py's parser gives it (bytes, ints, lists).

        ``reply_within`` (seconds): fail with ``RedisTimeout`` when Redis, not this
        process, is that late (see the module docstring)."""
        command: Any = args  # hiredis's stub types the argument as a 1-tuple
        packed = hiredis.pack_command(command)
        if reply_within is None:
            (reply,) = await self._execute(packed, 1, None)
        else:
            async with ReplyDeadline(self, reply_within, _describe(args)) as deadline:
                (reply,) = await self._execute(packed, 1, deadline)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def call_many(
        self, commands: Sequence[Sequence[Argument]], *, raise_errors: bool = True
    ) -> list[Any]:
        """Pipeline ``commands`` in one write; their replies in order. Every reply is
        read before the first error reply, if any, is raised (the others did run).

        With ``raise_errors=False`` no error reply is raised: a failed command's reply is
        its ``ResponseError`` instance, in its place. Connection errors and timeouts are
        raised either way (how many of the commands ran is then unknown)."""
        packed = b"".join(hiredis.pack_command(tuple(command)) for command in commands)  # type: ignore[arg-type]
        replies = await self._execute(packed, len(commands), None)
        if raise_errors:
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
        return replies

    async def _execute(
        self, packed: bytes, count: int, deadline: ReplyDeadline | None
    ) -> list[Any]:
        async with self._slots:
            if deadline is not None:
                deadline.holding()  # fails at once if Redis stopped answering meanwhile
            if self._idle:
                try:
                    return await self._run(self._idle.pop(), packed, count, deadline)
                except (RedisConnectionError, OSError):
                    pass  # a stale connection: once more on a fresh one
            connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            return await self._run(connection, packed, count, deadline)

    async def _run(
        self, connection: AbstractConnection, packed: bytes, count: int,
        deadline: ReplyDeadline | None,
    ) -> list[Any]:  # fmt: skip
        replies: list[Any] = []
        try:
            if deadline is not None:
                deadline.sent(connection)  # from here on Redis has it (or our handshake)
            await connection.send_packed_command(packed)
            for _ in range(count):
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:  # an error reply: the connection is in step
                    replies.append(error)
        except BaseException:
            if deadline is not None:
                deadline.waiting()  # a retry on a fresh connection starts over
            await connection.disconnect(nowait=True)
            raise
        self.replied_at = asyncio.get_running_loop().time()
        self._idle.append(connection)
        return replies  # error replies as ResponseError instances, in their places

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()


def _describe(command: Sequence[Argument]) -> str:
    """``FCALL watchllm_limit_check``: the command and its first argument, for messages."""
    words = [w.decode(errors="replace") if isinstance(w, bytes) else str(w) for w in command[:2]]
    return " ".join(words)
