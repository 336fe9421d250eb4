"""A TCP proxy in front of a real server (Postgres, Redis) that can stop forwarding: a
hung or partitioned server, without touching the server itself."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit


class FreezeProxy:
    """Forwards bytes both ways until told otherwise.

    - ``freeze()``: every connection stops forwarding and holds what is in flight; new
      connections are accepted but never answered. ``thaw()`` forwards what was held
      and carries on.
    - ``hold_when(marker)``: a connection whose client sends ``marker`` is held from
      then on (that chunk included, nothing comes back): one connection whose route
      died while the others work.

    ``accepted`` counts connections accepted so far.
    """

    def url_for(self, url: str) -> str:
        """``url`` (the server's), pointed at this proxy: its credentials, database and
        options kept (a password-protected Valkey refuses a client without them)."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._marker: bytes | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.accepted = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.port

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def hold_when(self, marker: bytes | None) -> None:
        self._marker = marker

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        held: asyncio.Event,
        from_client: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if from_client and self._marker is not None and self._marker in data:
                    held.set()
                await self._thawed.wait()
                if held.is_set():
                    await asyncio.Event().wait()  # never again
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.accepted += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            await self._thawed.wait()  # new connections: accepted, never answered
            up_reader, upstream = await asyncio.open_connection(*self._upstream)
            held = asyncio.Event()
            await asyncio.gather(
                self._pipe(reader, upstream, held, True), self._pipe(up_reader, writer, held, False)
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if upstream is not None:
                upstream.close()
            self._handlers.discard(task)
