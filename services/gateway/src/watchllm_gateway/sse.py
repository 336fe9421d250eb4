"""Server-sent events: split an upstream byte stream into whole events.

Events are forwarded to the caller one whole event at a time, as soon as each one is
complete, so the caller sees every token the moment the upstream sends it and never a
half event. Line endings are normalised to ``\\n`` (the SSE spec allows CRLF, CR, LF).
"""

from __future__ import annotations

_SEPARATOR = b"\n\n"


class SSESplitter:
    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete events (each ending with a blank line) found so far."""
        if b"\r" in chunk or self._buffer.endswith(b"\r"):
            chunk = chunk.replace(b"\r\n", b"\n")
        self._buffer += chunk
        if _SEPARATOR not in self._buffer:
            return []
        *complete, self._buffer = self._buffer.split(_SEPARATOR)
        return [event + _SEPARATOR for event in complete if event.strip()]

    def remainder(self) -> bytes:
        """Bytes after the last complete event (an upstream that ended mid-event)."""
        return self._buffer


def event_data(event: bytes) -> bytes | None:
    """The ``data:`` payload of one event (multi-line data joined by newlines)."""
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def event_name(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip()
    return None
