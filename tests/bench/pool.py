"""Persistent connections to one target for the load tool.

``ConnectionPool`` hands each request to an idle keep-alive connection, opens a new
one while all are busy (up to ``max_connections``) and queues what cannot be sent at
once (counted in ``queued_at_cap``); the next connection to free up takes it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from tests.bench.http1 import Connection, Record, Target


class ConnectionPool:
    """Persistent connections to one target, opened on demand up to ``max_connections``."""

    def __init__(self, target: Target, max_connections: int, keep_body: bool = False) -> None:
        self.target = target
        self.keep_body = keep_body
        self.max_connections = max_connections
        self.opened = 0
        self.queued_at_cap = 0
        self.outstanding = 0  # submitted, not finished
        self._payload = target.payload()
        self._idle: list[Connection] = []
        self._live: set[Connection] = set()
        self._pending: deque[Record] = deque()
        self._opening = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle_waiter: asyncio.Future[None] | None = None

    async def warm(self, count: int) -> None:
        """Open ``count`` connections before the clock starts."""
        count = min(count, self.max_connections)
        self._opening += count
        await asyncio.gather(*(self._connect() for _ in range(count)))

    def submit(self, record: Record) -> None:
        self.outstanding += 1
        if self._idle:
            self._idle.pop().send(record, self._payload)
            return
        self._pending.append(record)
        if len(self._live) + self._opening < self.max_connections:
            self._open()
        else:
            self.queued_at_cap += 1

    async def wait_idle(self, within: float) -> bool:
        """Wait until nothing is outstanding; False when ``within`` seconds passed first."""
        if self.outstanding == 0:
            return True
        self._idle_waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._idle_waiter), within)
        except TimeoutError:
            return False
        finally:
            self._idle_waiter = None
        return True

    async def close(self) -> None:
        """Close every connection (and fail what is still outstanding)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._pending:
            record = self._pending.popleft()
            record.error = record.error or "not_sent"
            self._finished(record, None)
        for connection in list(self._live):
            connection.close()
        for _ in range(100):  # connection_lost runs on a later loop iteration
            if not self._live:
                break
            await asyncio.sleep(0.001)

    def _open(self) -> None:
        self._opening += 1
        task = asyncio.get_running_loop().create_task(self._connect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        """Open one connection (``_opening`` was counted up by the caller)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(
                lambda: Connection(self), self.target.host, self.target.port
            )
        except OSError as exc:
            self._opening -= 1
            if self._pending:
                record = self._pending.popleft()
                record.error = f"connect_{type(exc).__name__}"
                self._finished(record, None)

    def _ready(self, connection: Connection) -> None:
        self._opening -= 1
        self.opened += 1
        self._live.add(connection)
        self._release(connection)

    def _release(self, connection: Connection) -> None:
        if self._pending:
            connection.send(self._pending.popleft(), self._payload)
        else:
            self._idle.append(connection)

    def _finished(self, record: Record, connection: Connection | None) -> None:
        if record.done is None:
            record.done = time.perf_counter()
        self.outstanding -= 1
        if connection is not None:
            self._release(connection)
        if record.on_done is not None:
            record.on_done(record)
        if self.outstanding == 0 and self._idle_waiter and not self._idle_waiter.done():
            self._idle_waiter.set_result(None)

    def _lost(self, connection: Connection) -> None:
        self._live.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        if self._pending and len(self._live) + self._opening < self.max_connections:
            self._open()
