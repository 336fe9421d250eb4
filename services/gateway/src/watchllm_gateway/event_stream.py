"""``EventStreamResponse``: an SSE body sent chunk by chunk, one task per response.

Starlette's ``StreamingResponse`` runs every stream in an anyio task group (a task for
the body, the handler's own task waiting for ``http.disconnect``): on this path that
cost about a tenth of a millisecond before the first byte (py-spy during
``make bench-gateway``). Here the body is sent from the handler's own task, and a
plain asyncio task watches for the disconnect; it is started once the headers are out
and takes its first step while the upstream's first chunk is awaited anyway.

A caller that goes away must still stop the upstream at once (the provider would go on
generating, and billing, tokens nobody reads), and uvicorn's ``send`` silently drops
bytes for a gone client rather than raising. So the watcher waits on ``receive`` and,
on ``http.disconnect``, cancels the sending task: the chunk iterator sees
``CancelledError`` where it waits for the upstream (``streaming.relay_stream`` records
``client_disconnected`` and closes the upstream). That cancellation is ours, so it is
taken back (``Task.uncancel``) and the response simply ends. An SDK hangs up as soon
as it reads the stream's terminal event (``data: [DONE]``, ``message_stop``): the relay
ends right after passing that event on, without waiting for the upstream's end of
body, and a disconnect after it is not recorded as one (see ``streaming``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self, chunks: AsyncIterator[bytes], headers: Mapping[str, str] | None = None
    ) -> None:
        self.body_iterator = chunks
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self.headers["cache-control"] = "no-cache"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        watch = _DisconnectWatch(receive, task)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            watch.start()
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            watch.stop()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.fired:
                raise  # someone else's cancellation (shutdown): let it through
            task.uncancel()
        finally:
            watch.stop()
            # A stream cut short leaves the iterator suspended: close it now, so its
            # ``finally`` (recording the exchange, closing the upstream) runs here.
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        if self.background is not None:  # also after a disconnect, as Starlette does
            await self.background()


class _DisconnectWatch:
    """Cancels ``task`` when the client disconnects, between ``start`` and ``stop``."""

    __slots__ = ("_receive", "_task", "_watcher", "_stopped", "fired")

    def __init__(self, receive: Receive, task: asyncio.Task[object]) -> None:
        self._receive = receive
        self._task = task
        self._watcher: asyncio.Task[None] | None = None
        self._stopped = False
        self.fired = False

    def start(self) -> None:
        if not self._stopped:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        """After this, a disconnect cancels nothing (the last bytes are being sent)."""
        self._stopped = True
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        if not self._stopped:
            self.fired = True
            self._task.cancel()
