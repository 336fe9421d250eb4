"""Relaying an upstream SSE stream to the caller, event by event, as it arrives.

Usage is read from the events on the way through (see ``usage``). The ``finally``
block records the exchange exactly once, whatever ended the stream:
- upstream sent its terminal event (OpenAI ``data: [DONE]``, Anthropic
  ``message_stop``) → ``ok``: the relay stops reading right after passing it on, so
  neither the caller nor the record waits for the upstream to end its body, and a
  caller that hangs up on seeing that event (the SDKs do) has not aborted anything;
- upstream finished normally → ``ok``;
- upstream broke or timed out mid-stream → an error event in the provider's stream
  format is sent (the SDKs raise on it) and the exchange is an upstream error/timeout;
- anything else that goes wrong while relaying (a stream the gateway cannot read) →
  logged, the same error event, and a 502 ``upstream_stream_unreadable`` — except in
  the cache's copy of the answer: an event it cannot assemble only means this answer
  is not stored, and the caller's stream goes on;
- the caller went away before the terminal event → ``client_disconnected``; the
  upstream connection is closed at once so the provider stops generating (and
  billing) tokens nobody will read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import orjson

from watchllm_gateway.exchange import Exchange
from watchllm_gateway.settings import ProviderKind
from watchllm_gateway.sse import SSESplitter
from watchllm_gateway.upstream import UpstreamBodyError, UpstreamResponse
from watchllm_gateway.usage import AnthropicStreamUsage, OpenAIStreamUsage
from watchllm_shared.contracts import RequestStatus

log = logging.getLogger(__name__)

_DRAIN_SECONDS = 0.5  # after the terminal event, for the upstream to end its body


def stream_error_event(api: ProviderKind, error_type: str, message: str) -> bytes:
    if api is ProviderKind.ANTHROPIC:
        payload = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"
    payload_oa = {"error": {"message": message, "type": error_type, "code": error_type}}
    return b"data: " + orjson.dumps(payload_oa) + b"\n\n"


async def relay_stream(
    exchange: Exchange,
    response: UpstreamResponse,
    caller_wants_usage: bool,
    on_complete: Callable[[Exchange], None],
) -> AsyncIterator[bytes]:
    api = exchange.spec.api
    observer = (
        AnthropicStreamUsage() if api is ProviderKind.ANTHROPIC
        else OpenAIStreamUsage(caller_wants_usage)
    )  # fmt: skip
    splitter = SSESplitter()

    def relayable(events: list[bytes]) -> list[bytes]:
        ready = []
        for event in events:
            if exchange.bodies is not None:  # a copy for body logging (``body_log``)
                exchange.bodies.add_event(event)
            if exchange.assembler is not None:
                try:
                    exchange.assembler.feed(event)
                except Exception:  # the cache's copy only: this answer is not stored
                    log.warning("stream of request %s not cacheable: event unreadable",
                                exchange.request_id, exc_info=True)  # fmt: skip
                    exchange.assembler = None
            if observer.forward(event):
                ready.append(event)
            if observer.done:
                break  # the terminal event: nothing after it belongs to this answer
        return ready

    try:
        try:
            async for chunk in response.chunks():
                # Everything complete that arrived is written at once: one send per
                # upstream read, not one per event (the events themselves are whole).
                ready = relayable(splitter.feed(chunk))
                if ready:
                    exchange.mark_first_byte()
                    yield b"".join(ready)
                if observer.done:
                    # The answer is complete; the body's end is normally right behind
                    # it. Waiting briefly for it keeps the connection for the next
                    # request (aiohttp drops one whose body was not read to the end).
                    await response.drain(_DRAIN_SECONDS)
                    return
            ready = relayable(splitter.finish())
            if ready:
                exchange.mark_first_byte()
                yield b"".join(ready)
            if not observer.done and splitter.remainder().strip():
                exchange.fail(502, RequestStatus.UPSTREAM_ERROR, "upstream_stream_truncated")
                yield stream_error_event(
                    api, "upstream_error", "The upstream provider ended the stream mid-event"
                )
        except UpstreamBodyError as broken:
            if broken.timed_out:
                exchange.fail(504, RequestStatus.UPSTREAM_TIMEOUT, "upstream_timeout")
                yield stream_error_event(api, "upstream_timeout", "The upstream provider timed out")
            else:
                exchange.fail(502, RequestStatus.UPSTREAM_ERROR, "upstream_stream_broken")
                yield stream_error_event(
                    api, "upstream_error", "The upstream provider ended the stream abruptly"
                )
        except Exception:  # not CancelledError/GeneratorExit: those are BaseExceptions
            log.exception(
                "could not relay the upstream stream (request %s, model %s)",
                exchange.request_id, exchange.model,
            )  # fmt: skip
            exchange.fail(502, RequestStatus.UPSTREAM_ERROR, "upstream_stream_unreadable")
            yield stream_error_event(
                api,
                "upstream_error",
                "The upstream provider sent a stream the gateway could not read",
            )
    except (asyncio.CancelledError, GeneratorExit):
        if not observer.done:  # after the terminal event the answer is complete
            exchange.fail(499, RequestStatus.CLIENT_DISCONNECTED, "client_disconnected")
        raise
    finally:
        response.close(abort=exchange.status is not RequestStatus.OK)
        exchange.usage = observer.usage
        on_complete(exchange)
