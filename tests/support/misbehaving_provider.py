"""A provider that misbehaves the ways real ones and the proxies before them do, for the
gateway's tests; the request's model chooses the behaviour (see ``chat`` and
``messages``). The well-behaved fake provider is ``watchllm_shared.fake_provider``.

    python -m tests.support.misbehaving_provider PORT PORT2

``PORT2`` is a second listener (another origin: the redirect target). ``GET /_seen``
returns every request seen on either port (port, path, method, headers, body).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiohttp import web

SEEN: list[dict[str, Any]] = []
PORT2 = int(sys.argv[2]) if __name__ == "__main__" else 0


def chunk(
    content: str | None = None, usage: dict[str, int] | None = None, choices: bool = True
) -> bytes:
    c: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
    }
    c["choices"] = (
        [{"index": 0, "delta": {"content": content}, "finish_reason": None}] if choices else []
    )
    if usage is not None:
        c["usage"] = usage
    return json.dumps(c).encode()


async def record(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    SEEN.append(
        {
            "port": request.transport.get_extra_info("sockname")[1],
            "path": request.path,
            "method": request.method,
            "headers": dict(request.headers),
            "body": raw.decode(errors="replace"),
        }
    )
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


async def seen(request: web.Request) -> web.Response:
    return web.json_response(SEEN)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def sink(request: web.Request) -> web.Response:
    await record(request)
    return web.json_response({"error": {"message": "sink", "type": "x"}}, status=404)


async def chat(request: web.Request) -> web.StreamResponse:
    body = await record(request)
    model = body.get("model", "")
    if model == "gpt-redirect":
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{PORT2}/sink")
    if model == "gpt-html400":
        return web.Response(
            status=400,
            content_type="text/html",
            text="<html><body><h1>400 Bad Request</h1>nginx</body></html>",
        )
    if model == "gpt-drop":
        request.transport.close()  # accepted the request, then the connection dies
        await asyncio.sleep(1)
        return web.Response()
    if model == "gpt-crlf":
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        parts = [
            b"data: " + chunk("Hello") + b"\r\n\r",  # event split between \r and \n
            b"\n",
            b"data: "
            + chunk(
                None,
                {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                choices=False,
            )
            + b"\r\n\r\n",
            b"data: [DONE]\r\n\r\n",
        ]
        for i, p in enumerate(parts):
            if i:
                await asyncio.sleep(0.1)
            await resp.write(p)
        await resp.write_eof()
        return resp
    if model == "gpt-lagdone":  # a normal stream whose connection ends 30 ms after [DONE]
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + chunk("Hello") + b"\n\n")
        await resp.write(
            b"data: "
            + chunk(
                None,
                {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                choices=False,
            )
            + b"\n\n"
        )
        await resp.write(b"data: [DONE]\n\n")
        await asyncio.sleep(0.03)
        await resp.write_eof()
        return resp
    if model == "gpt-cr":  # bare CR line endings, allowed by the SSE spec
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for p in [
            b"data: " + chunk("Hello") + b"\r\r",
            b"data: "
            + chunk(None, {"prompt_tokens": 11, "completion_tokens": 7}, choices=False)
            + b"\r\r",
            b"data: [DONE]\r\r",
        ]:
            await resp.write(p)
            await asyncio.sleep(0.3)
        await resp.write_eof()
        return resp
    return web.json_response(
        {
            "id": "x",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    )


def sse(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


async def messages(request: web.Request) -> web.StreamResponse:
    body = await record(request)
    model = body.get("model", "")
    if model == "claude-redirect":
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{PORT2}/sink")
    if model == "claude-nullusage":
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        msg = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "usage": None,
        }
        for e in [
            sse("message_start", {"type": "message_start", "message": msg}),
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hi"},
                },
            ),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 5},
                },
            ),
            sse("message_stop", {"type": "message_stop"}),
        ]:
            await resp.write(e)
            await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp
    return web.json_response(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
    )


async def main() -> None:
    app = web.Application()
    app.router.add_get("/_seen", seen)
    app.router.add_get("/health", health)
    app.router.add_route("*", "/sink", sink)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    await web.TCPSite(runner, "127.0.0.1", PORT2).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
