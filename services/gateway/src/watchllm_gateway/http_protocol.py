"""uvicorn's httptools protocol with the bounds it lacks: what a caller can make the
gateway hold before any key is checked.

uvicorn (0.54, ``http="httptools"``) reads a request head of any size (50 connections
sending 4 MiB of one header took the gateway from 83 to 290 MiB), waits for it forever,
buffers up to 64 KiB of body per connection before the app asked for any, and keeps a
connection whose request body trickles in after the answer was sent for as long as
bytes keep coming. ``GuardedHttpProtocol`` adds, per connection:

- a head size cap (``max_header_bytes``): a head that does not end within it → 431,
  checked before the bytes are parsed; what the caller still sends is dropped unparsed
  for a second, then the connection is closed;
- a head deadline (``header_read_timeout_seconds``): a connection that opened, or a
  request whose head did not come in one read, and has not finished its head within it
  → 408 and closed (a keep-alive connection between requests is uvicorn's
  ``timeout_keep_alive``, 5 s);
- no body read ahead: when a head ends and its body has not all come with it, reading
  pauses until the app asks for the body (after the key was checked, see ``intake``);
  what that network read brought stays, at most one read;
- a discard deadline: when the app answered without reading the whole body (a refused
  key, a 413), uvicorn reads the rest and drops it without keeping it; if the rest has
  not arrived within ``body_read_timeout_seconds`` the connection is closed;
- a connection cap (``max_connections``): a connection past it is closed at once,
  before anything is read; connections already open keep working.

So the memory a caller without a key can hold is bounded by the connection cap times
(head cap + one read), and the time by the two deadlines.

Cost: a request that arrives whole in one read (nearly all of them) arms no timer and
pauses nothing; timers and pauses are for the slow and the large.

These hooks are uvicorn internals, pinned by ``uv.lock``; ``tests/e2e/
test_gateway_memory.py`` drives each of them through real sockets, so an upgrade that
moves them fails there. ``body_received`` is one too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


def _status(code: int, reason: str) -> bytes:
    body = reason.encode()
    return (
        f"HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


_HEAD_TOO_LARGE = _status(431, "Request Header Fields Too Large")
_HEAD_TIMEOUT = _status(408, "Request Timeout")
_LINGER_SECONDS = 1.0


class GuardedHttpProtocol(HttpToolsProtocol):
    """Configured by subclassing (``guarded_protocol``): uvicorn builds one per connection."""

    max_header_bytes = 32 * 1024
    header_timeout = 10.0
    body_timeout = 30.0
    max_connections = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0  # of this head, so far
        self._timer: asyncio.TimerHandle | None = None  # the head's or the discard's
        self._refused = False  # answered 431: what comes is dropped unparsed
        self._pause_after_read = False  # a head ended in this read: pause if the body did not

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.close()
            return
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # On every request: kept to a few attribute reads (``make bench-gateway-instructions``).

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped until the close, so the answer is not lost to a reset
        if not self._in_head:
            _feed(self, data)
            return
        room = self.max_header_bytes - self._head_bytes
        if len(data) > room and data.find(b"\r\n\r\n", 0, room + 4) < 0:
            self._refuse(_HEAD_TOO_LARGE)  # the head does not end within the cap
            return
        _feed(self, data)
        if self._pause_after_read:  # a head ended in this read
            self._pause_after_read = False
            cycle = self.cycle  # None after a WebSocket upgrade: nothing to pause
            if cycle is not None and cycle.more_body and not self.transport.is_closing():
                self.flow.pause_reading()  # until the app asks for the body (uvicorn resumes)
        elif self._in_head:  # all of it was head, and the head goes on
            self._head_bytes += len(data)
            if self._timer is None and self._idle():
                self._arm(self.header_timeout)
        # (Asking ``_in_head`` first counted a read holding a head *and its whole body*
        # as head bytes of the next request, which then got 431. The start of a next
        # head pipelined behind a whole request in one read is not counted: one read.)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._timer is not None:
            self._disarm()
        _headers_complete(self)
        # Pausing here would cost every request two system calls; after the read, only
        # a request whose body did not come with its head is paused.
        self._pause_after_read = True

    def on_message_complete(self) -> None:
        _message_complete(self)
        self._in_head = True
        if self._timer is not None:
            self._disarm()  # a discard deadline: the body is all in
        if self._idle() and not self.transport.is_closing():
            self._arm(self.header_timeout)  # answered already: wait for the next head

    def on_response_complete(self) -> None:
        _response_complete(self)
        if not self._in_head and not self.transport.is_closing():
            # Answered before the body ended: uvicorn discards the rest, for so long.
            self._arm(self.body_timeout)

    def _idle(self) -> bool:
        """No request is being answered on this connection."""
        return self.cycle is None or self.cycle.response_complete

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, answer: bytes) -> None:
        """Answer, then drop what still comes for ``_LINGER_SECONDS`` before closing:
        closing a socket with unread bytes makes the kernel reset it, and the caller
        would see the reset instead of the answer."""
        self._disarm()
        self._refused = True
        if self._idle():
            self.transport.write(answer)
        self.flow.resume_reading()
        self._timer = self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes and self._idle():  # a head begun, not ended
            self._refuse(_HEAD_TIMEOUT)
        else:
            self.transport.close()


_feed = HttpToolsProtocol.data_received
_headers_complete = HttpToolsProtocol.on_headers_complete
_message_complete = HttpToolsProtocol.on_message_complete
_response_complete = HttpToolsProtocol.on_response_complete


def body_received(receive: Callable[[], Awaitable[Any]]) -> bool:
    """Whether uvicorn already holds the whole request body (it came with the head):
    reading it then cannot stall, and the memory is already spent. False when in doubt
    (another server, or ``receive`` wrapped by middleware)."""
    cycle = getattr(receive, "__self__", None)
    return isinstance(cycle, RequestResponseCycle) and not cycle.more_body


def guarded_protocol(
    max_header_bytes: int, header_timeout: float, body_timeout: float, max_connections: int
) -> type[GuardedHttpProtocol]:
    """The protocol class for uvicorn's ``http=`` with these bounds."""
    return type(
        "GuardedHttpProtocol", (GuardedHttpProtocol,),
        {"max_header_bytes": max_header_bytes, "header_timeout": header_timeout,
         "body_timeout": body_timeout, "max_connections": max_connections},
    )  # fmt: skip
