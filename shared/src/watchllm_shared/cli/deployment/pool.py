"""Persistent connections to one target for load tests (``http1``).

``ConnectionPool`` hands each request to an idle keep-alive connection, opens a new
one while all are busy (up to ``max_connections``) and queues what cannot be sent at
once (counted in ``queued_at_cap``); the next connection to free up takes it.

Idle connections are reused newest first, and never once idle for ``MAX_IDLE_SECONDS``:
servers close idle keep-alive connections (uvicorn after 5 s), and a request written
as the server closes would fail through no fault of the server.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque

from watchllm_shared.cli.deployment.http1 import Connection, Record, Target

MAX_IDLE_SECONDS = 2.0


class ConnectionPool:
    """Persistent connections to one target, opened on demand up to ``max_connections``."""

    def __init__(
        self,
        target: Target,
        max_connections: int,
        keep_body: bool = False,
        capture: tuple[bytes, ...] = (),
    ) -> None:
        self.target = target
        self.keep_body = keep_body
        self.capture = capture  # response headers each record keeps (``Record.headers``)
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
        connection = self._take_idle()
        if connection is not None:
            connection.send(record, record.payload or self._payload)
            return
        self._pending.append(record)
        if len(self._live) + self._opening < self.max_connections:
            self._open()
        else:
            self.queued_at_cap += 1

    def _take_idle(self) -> Connection | None:
        """The newest idle connection, unless it was idle too long: then it is closed, and
        so are all the older ones."""
        if not self._idle:
            return None
        connection = self._idle.pop()
        if time.perf_counter() - connection.idle_since <= MAX_IDLE_SECONDS:
            return connection
        for stale in (connection, *self._idle):
            stale.close()
        self._idle.clear()
        return None

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
        """Close every connection; what is still outstanding fails as ``timeout`` (sent,
        unanswered) or ``not_sent`` (waiting for a connection)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._pending:
            record = self._pending.popleft()
            record.error = record.error or "not_sent"
            self._finished(record, None)
        for connection in list(self._live):
            if connection.record is not None:
                connection.record.error = connection.record.error or "timeout"
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
                lambda: Connection(self), self.target.host, self.target.port,
                ssl=ssl.create_default_context() if self.target.tls else None,
            )  # fmt: skip
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
            record = self._pending.popleft()
            connection.send(record, record.payload or self._payload)
        else:
            connection.idle_since = time.perf_counter()
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
        waiting = len(self._pending) > self._opening  # more than the connections opening
        if waiting and len(self._live) + self._opening < self.max_connections:
            self._open()
