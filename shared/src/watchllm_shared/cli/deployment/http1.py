"""A minimal HTTP/1.1 keep-alive client for load tests, on asyncio protocols.

``watchllm loadtest`` and the benchmarks (``tests/bench``) send with it. A load tool
must stay cheap when the target slows down: httpx's pool walks every connection and
queued request on each request (measured: ~10 ms of CPU a request once a stall had
opened 256 connections, so the tool fell behind its own schedule), this costs ~15 µs.

One ``Connection`` (an ``asyncio.Protocol``) carries one request at a time; the
request bytes are built once per target (or once per request, ``Record.payload``) and
written with a single ``write``. The ``ResponseParser`` reads the status line,
``Content-Length``, chunked and read-until-close bodies incrementally, notes when the
first body byte arrived, counts SSE events (blank-line separators), keeps the last
bytes of the body (``tail``: did a stream end ``data: [DONE]``?) and the headers it was
asked to capture, without keeping the body unless asked. Connections belong to a
``pool.ConnectionPool``; no per-request task, future or coroutine is needed:
completions are callbacks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from watchllm_shared.cli.deployment.pool import ConnectionPool

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE = range(7)
_TAIL = 32  # body bytes kept at the end of every response


class Record:
    """One request: times from ``time.perf_counter``; ``error`` None when it completed."""

    __slots__ = (
        "scheduled", "sent", "first_byte", "done", "status", "error", "events", "body", "on_done",
        "payload", "headers", "tail",
    )  # fmt: skip

    def __init__(
        self,
        scheduled: float,
        on_done: Callable[[Record], None] | None = None,
        payload: bytes | None = None,
    ) -> None:
        self.scheduled = scheduled
        self.payload = payload  # this request's bytes (``Target.request``); None: the pool's
        self.headers: dict[bytes, bytes] = {}  # the captured ones, names lower-case
        self.tail = b""
        self.sent: float | None = None
        self.first_byte: float | None = None
        self.done: float | None = None
        self.status = 0
        self.error: str | None = None
        self.events = 0
        self.body: bytes | None = None
        self.on_done = on_done


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    body: bytes = b""
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    tls: bool = False

    def payload(self) -> bytes:
        """The request with ``body``: what the pool sends unless a record has its own."""
        return self.request(self.body)

    def request(self, body: bytes) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseParser:
    """Incremental response parser; ``feed`` returns True once a response is complete."""

    def __init__(self, keep_body: bool = False, capture: tuple[bytes, ...] = ()) -> None:
        self.keep_body = keep_body
        self._capture = tuple(b"\r\n" + name.lower() + b":" for name in capture)
        self._buf = bytearray()
        self.reset()

    def reset(self) -> None:
        self.status = 0
        self.first_byte: float | None = None
        self.events = 0
        self.must_close = False
        self.parts: list[bytes] = []
        self.headers: dict[bytes, bytes] = {}
        self.tail = b""
        self._state = _HEAD
        self._remaining = 0
        self._last_newline = False

    @property
    def until_close(self) -> bool:
        return self._state == _UNTIL_CLOSE

    def feed(self, data: bytes, now: float) -> bool:
        buf = self._buf
        buf += data
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return False
                self._head(bytes(buf[:end]))
                del buf[: end + 4]
                if self._state == _LENGTH and self._remaining == 0:
                    return True
            elif state == _LENGTH or state == _CHUNK_DATA:
                if not buf:
                    return False
                take = min(len(buf), self._remaining)
                self._body(bytes(buf[:take]), now)
                del buf[:take]
                self._remaining -= take
                if self._remaining == 0:
                    if state == _LENGTH:
                        return True
                    self._state = _CHUNK_END
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    return False
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
                del buf[: end + 2]
                self._state, self._remaining = (_CHUNK_DATA, size) if size else (_TRAILER, 0)
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return False
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                end = buf.find(b"\r\n")
                if end < 0:
                    return False
                del buf[: end + 2]
                if end == 0:
                    return True
            else:  # read until the server closes the connection
                if buf:
                    self._body(bytes(buf), now)
                    buf.clear()
                return False

    def _head(self, head: bytes) -> None:
        self.status = int(head[9:12])
        lower = head.lower()
        for marker in self._capture:
            start = lower.find(marker)
            if start >= 0:
                end = head.find(b"\r\n", start + 2)
                value = head[start + len(marker) : end if end >= 0 else None]
                self.headers[marker[2:-1]] = value.strip()
        self.must_close = b"\r\nconnection: close" in lower
        if b"\r\ntransfer-encoding:" in lower and b"chunked" in lower:
            self._state = _CHUNK_SIZE
            return
        start = lower.find(b"\r\ncontent-length:")
        if start >= 0:
            end = lower.find(b"\r\n", start + 2)
            self._state = _LENGTH
            self._remaining = int(lower[start + 17 : end if end >= 0 else None])
        elif self.status in (204, 304) or self.status < 200:
            self._state, self._remaining = _LENGTH, 0
        else:
            self._state, self.must_close = _UNTIL_CLOSE, True

    def _body(self, chunk: bytes, now: float) -> None:
        if not chunk:
            return
        if self.first_byte is None:
            self.first_byte = now
        self.events += chunk.count(b"\n\n") + (self._last_newline and chunk[0] == 10)
        self._last_newline = chunk[-1] == 10
        self.tail = (self.tail + chunk)[-_TAIL:]
        if self.keep_body:
            self.parts.append(chunk)


class Connection(asyncio.Protocol):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._parser = ResponseParser(pool.keep_body, pool.capture)
        self.transport: asyncio.Transport | None = None
        self.record: Record | None = None
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._pool._ready(self)

    def send(self, record: Record, payload: bytes) -> None:
        assert self.transport is not None
        self.record = record
        record.sent = time.perf_counter()
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.record is None:  # nothing asked: a broken server; drop the connection
            self.close()
            return
        if self._parser.feed(data, now):
            self._complete(now)

    def _complete(self, now: float) -> None:
        record, parser = self.record, self._parser
        assert record is not None
        self.record = None
        record.done, record.status = now, parser.status
        record.first_byte, record.events = parser.first_byte, parser.events
        record.headers, record.tail = parser.headers, parser.tail
        if parser.keep_body:
            record.body = b"".join(parser.parts)
        must_close = parser.must_close
        parser.reset()
        if must_close:
            self.close()
        self._pool._finished(record, None if must_close else self)

    def connection_lost(self, exc: Exception | None) -> None:
        record = self.record
        if record is not None:
            if self._parser.until_close and exc is None:
                self._complete(time.perf_counter())
            else:
                self.record = None
                record.error = record.error or "connection_lost"
                self._pool._finished(record, None)
        self._pool._lost(self)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
