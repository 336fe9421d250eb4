"""Server-sent events: split an upstream byte stream into whole events.

Events are forwarded to the caller one whole event at a time, as soon as each one is
complete, so the caller sees every token the moment the upstream sends it and never a
half event. Line endings are normalised to ``\\n`` (the SSE spec allows CRLF, CR, LF),
also across chunk boundaries: a chunk ending in ``\\r`` keeps that ``\\r`` back until
the next chunk shows whether a ``\\n`` follows (or ``finish`` says none will), so a
``\\r\\n\\r\\n`` split as ``…\\r`` | ``\\n`` still ends exactly one event.
"""

from __future__ import annotations

_SEPARATOR = b"\n\n"


class SSESplitter:
    __slots__ = ("_buffer", "_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._cr = False  # the last chunk ended with a "\r" not yet added to the buffer

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete events (each ending with a blank line) found so far."""
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if b"\r" in chunk:  # rare: most upstreams end lines with "\n" alone
            if chunk.endswith(b"\r"):
                chunk = chunk[:-1]
                self._cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return self._split(chunk)

    def finish(self) -> list[bytes]:
        """At the end of the stream: events completed by a ``\\r`` kept back."""
        if not self._cr:
            return []
        self._cr = False
        return self._split(b"\n")

    def remainder(self) -> bytes:
        """Bytes after the last complete event (an upstream that ended mid-event)."""
        return self._buffer

    def _split(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        if _SEPARATOR not in self._buffer:
            return []
        *complete, self._buffer = self._buffer.split(_SEPARATOR)
        return [event + _SEPARATOR for event in complete if event.strip()]


def event_data(event: bytes) -> bytes | None:
    """The ``data:`` payload of one event (multi-line data joined by newlines)."""
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def event_name(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip()
    return None
