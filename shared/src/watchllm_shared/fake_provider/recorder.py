"""The bounded in-memory log of requests behind ``GET``/``DELETE /_fake/requests``.

Requests are stored raw (cheap on the hot path) and decoded only when read. Every
header is kept as sent, ``authorization``/``x-api-key`` values included: tests assert
which key the gateway forwarded upstream. Header names are lower case; repeated
headers are joined with ``", "``. ``body`` is the parsed JSON body, the raw text when
it is not JSON, or null when empty.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class _Recorded:
    received_at: float
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class RequestRecorder:
    def __init__(self, max_requests: int) -> None:
        self._requests: deque[_Recorded] = deque(maxlen=max_requests)

    def add(
        self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        self._requests.append(_Recorded(time.time(), method, path, query, headers, body))

    def clear(self) -> None:
        self._requests.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        """Recorded requests, oldest first, as JSON-ready dicts."""
        return [_decode(request) for request in self._requests]


def _decode(request: _Recorded) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        body: Any = orjson.loads(request.body) if request.body else None
    except orjson.JSONDecodeError:
        body = request.body.decode("utf-8", "replace")
    return {
        "received_at": request.received_at,
        "method": request.method,
        "path": request.path,
        "query": request.query.decode("latin-1"),
        "headers": headers,
        "body": body,
    }
