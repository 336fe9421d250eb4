"""An upstream answer read in the caller's shape: ``read`` gives the translated JSON
(answer or error), ``chunks`` the translated stream. Everything else (status, headers,
latency, attempts, ``drain``, ``close``) is the upstream's, so ``proxy`` and
``streaming`` handle a translated answer exactly like a native one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from watchllm_gateway.sse import SSESplitter
from watchllm_gateway.upstream import UpstreamResponse


class StreamTranslator(Protocol):
    def feed(self, event: bytes) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class Direction:
    """From one shape to the other: whole answers, error bodies, streams."""

    answer: Callable[[dict[str, Any]], dict[str, Any]]
    error: Callable[[int, Any], dict[str, Any]]
    stream: Callable[[], StreamTranslator]


class TranslatedResponse(UpstreamResponse):
    __slots__ = ("_direction",)

    def __init__(self, inner: UpstreamResponse, direction: Direction) -> None:
        super().__init__(inner._response, inner.latency_seconds, inner.attempts)
        self._direction = direction

    async def read(self) -> bytes:
        content = await super().read()
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError:
            return content  # not JSON: ``proxy`` answers with its own error
        status = self.status
        if 200 <= status < 300 and isinstance(parsed, dict):
            return orjson.dumps(self._direction.answer(parsed))
        if status >= 400:
            return orjson.dumps(self._direction.error(status, parsed))
        return content

    async def chunks(self) -> AsyncIterator[bytes]:
        splitter = SSESplitter()
        translator = self._direction.stream()
        async for chunk in super().chunks():
            out = [piece for event in splitter.feed(chunk) for piece in translator.feed(event)]
            if out:
                yield b"".join(out)
        out = [piece for event in splitter.finish() for piece in translator.feed(event)]
        out.extend(translator.finish())
        if out:
            yield b"".join(out)
        rest = splitter.remainder()
        if rest.strip():
            yield rest  # a half event: ``streaming`` reports the stream truncated
