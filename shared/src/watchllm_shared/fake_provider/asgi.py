"""Bare ASGI plumbing: read a body, parse a JSON object, send JSON or an event stream.

No framework on purpose: the fake must stay far cheaper than the gateway it is used
to benchmark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ErrorBody = Callable[[int, str], dict[str, Any]]

_JSON = b"application/json"
# Every answer sets a cookie, as the providers' edge does (Cloudflare's ``__cf_bm`` on
# api.openai.com): a gateway must neither send it back nor hand it to its callers.
EDGE_COOKIE = (b"set-cookie", b"__cf_bm=fake-edge-cookie; Path=/; HttpOnly")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    EDGE_COOKIE,
]


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; raises ``BodyTooLarge`` or ``ClientGone``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        part: bytes = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return b"".join(parts) + part if parts else part
        parts.append(part)


async def send_json(
    send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps(payload)
    headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()), EDGE_COOKIE]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def parse_object(raw: bytes, error_body: ErrorBody, send: Send) -> dict[str, Any] | None:
    """The JSON object in ``raw``; None (after sending a 400) for anything else."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        await send_json(send, 400, error_body(400, "could not parse the JSON body"))
        return None
    if not isinstance(body, dict):
        await send_json(send, 400, error_body(400, "the request body must be a JSON object"))
        return None
    return body


async def send_stream(
    send: Send, events: list[bytes], chunk_delay: float, fail_after: int | None
) -> None:
    """Send ``events`` as a chunked body, ``chunk_delay`` seconds apart.

    With ``fail_after`` set, only that many events go out and the body is never
    finished: the server then closes the connection mid-response (uvicorn logs
    "ASGI callable returned without completing response.").
    """
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
    to_send = events if fail_after is None else events[:fail_after]
    for index, event in enumerate(to_send):
        if index and chunk_delay:
            await asyncio.sleep(chunk_delay)
        await send({"type": "http.response.body", "body": event, "more_body": True})
    if fail_after is None:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown; the fake holds no resources."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
