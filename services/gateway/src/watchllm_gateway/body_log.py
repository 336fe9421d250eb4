"""Body logging for projects that turned it on (``watchllm projects logging``).

On the request path only copies are kept, never work done: the raw request bytes the
gateway read anyway (``Exchange.attribute``), the answer's bytes (a JSON answer, or a
cache hit's stored answer) and, for a relayed stream, its events as relayed, up to
``MAX_BODY_CHARS`` of them. Everything else happens in ``publish``, which the proxy
calls where it records the exchange, after the answer's last byte: decoding, assembling
a stream into the equivalent JSON answer (``cache_shapes.StreamAssembler``; a stream it
cannot rebuild, e.g. tool calls, is logged as its events' text), redaction
(``body_redaction``), the size cap with its visible marker (``contracts.request_bodies``)
and an enqueue to the bodies' own publisher (``events.StreamPublisher`` on
``REQUEST_BODIES_STREAM``), which writes to Redis off the request path.

Failure modes: Redis slow or down, or the buffer full: the publisher's (bodies wait in
memory, bounded by ``BODY_BUFFER_SIZE`` entries of at most ~64 KiB each, then are
dropped and counted in ``watchllm_request_bodies_dropped_total``); the answer and the
request's event are never held back by a body. A request refused before its body was
read as a JSON object (bad key, 413, invalid JSON) logs no body.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from starlette.responses import Response

from watchllm_gateway.body_redaction import CREDENTIAL_NAMES, Redact, redactor
from watchllm_gateway.cache_shapes import StreamAssembler
from watchllm_shared.accounts import BodyLogging
from watchllm_shared.contracts.request_bodies import (
    MAX_BODY_CHARS,
    TRUNCATED_MARKER,
    RequestBodies,
    truncate,
)

if TYPE_CHECKING:
    from watchllm_gateway.events import StreamPublisher
    from watchllm_gateway.exchange import Exchange

log = logging.getLogger(__name__)

# Entries waiting for Redis; each holds two bodies of at most MAX_BODY_CHARS: ≤ ~128 MiB.
BODY_BUFFER_SIZE = 1_000
# Redaction reads this much past the cap, so a secret cut by the cap is still seen whole.
_REDACTION_MARGIN = 512
# Bodies up to this size are parsed and redacted value by value (``_prepared``).
_PARSE_BYTES = 4 * MAX_BODY_CHARS


class BodyCapture:
    """One request's copies, taken on the request path (no decoding, no redaction)."""

    __slots__ = ("setting", "request", "answer", "events", "_event_bytes")

    def __init__(self, setting: BodyLogging, request: bytes) -> None:
        self.setting = setting
        self.request = request
        self.answer: bytes | None = None
        self.events: list[bytes] = []
        self._event_bytes = 0

    def add_event(self, event: bytes) -> None:
        """A relayed stream event; past the cap (in bytes, ≥ the characters) only the
        terminal events would matter to the assembler, and the text is cut anyway."""
        if self._event_bytes <= 4 * MAX_BODY_CHARS:
            self.events.append(event)
            self._event_bytes += len(event)

    def answered(self, response: Response) -> None:
        """The answer of a non-streamed response (a stream's comes by ``add_event``)."""
        body = getattr(response, "body", None)
        if self.answer is None and isinstance(body, bytes):
            self.answer = body


class BodyLog:
    def __init__(self, publisher: StreamPublisher) -> None:
        self._publisher = publisher

    def publish(self, exchange: Exchange) -> None:
        """After the last byte: one ``RequestBodies`` for the exchange, if it has any.
        Never raises: it runs where the exchange is recorded (a stream's ``finally``)."""
        if exchange.bodies is None or exchange.grant is None:
            return
        try:
            self._publish(exchange, exchange.bodies, exchange.grant.project_id)
        except Exception:  # a body we cannot prepare is lost, never the request's record
            log.exception("request %s: bodies not logged", exchange.request_id)

    def _publish(self, exchange: Exchange, capture: BodyCapture, project_id: UUID) -> None:
        redact = redactor(capture.setting.redactions)
        answer = capture.answer if capture.answer is not None else _assembled(exchange, capture)
        bodies = RequestBodies(
            request_id=exchange.request_id, project_id=project_id,
            occurred_at=datetime.now(UTC), endpoint=exchange.spec.path,
            retention_days=capture.setting.retention_days,
            request=_prepared(capture.request, redact), response=_prepared(answer, redact),
        )  # fmt: skip
        self._publisher.publish(bodies.to_stream_fields())


def _assembled(exchange: Exchange, capture: BodyCapture) -> bytes:
    """A relayed stream as the equivalent JSON answer, else its events' text."""
    if not capture.events:
        return b""
    assembler = StreamAssembler(exchange.spec.path)
    try:
        for event in capture.events:
            assembler.feed(event)
        assembled = assembler.result()
    except Exception:  # an event it cannot read: the raw text is the record
        log.debug("stream of request %s logged as events", exchange.request_id, exc_info=True)
        assembled = None
    return b"".join(capture.events) if assembled is None else orjson.dumps(assembled)


def _prepared(raw: bytes, redact: Redact) -> str:
    """Decoded (bad UTF-8 replaced), redacted, cut to the cap with the marker.

    A JSON body is redacted value by value (its strings, never its numbers or names:
    a timestamp is not a phone number, and the result stays JSON); a body too large
    to parse after every answer, or not JSON (a stream's events), as text, reading
    ``_REDACTION_MARGIN`` past the cap so a secret the cap cuts is still seen whole.
    """
    if len(raw) <= _PARSE_BYTES:
        try:
            return truncate(orjson.dumps(_redacted(orjson.loads(raw), redact)).decode())
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
            pass  # not JSON, or JSON orjson cannot write back (a huge int, deep nesting)
    text = raw.decode("utf-8", errors="replace")
    redacted = redact(text[: MAX_BODY_CHARS + _REDACTION_MARGIN])
    if len(text) <= MAX_BODY_CHARS + _REDACTION_MARGIN:
        return truncate(redacted)  # masks may lengthen a text near the cap
    omitted = len(text) - MAX_BODY_CHARS
    return redacted[:MAX_BODY_CHARS] + TRUNCATED_MARKER.format(omitted=omitted)


def _redacted(value: Any, redact: Redact) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: "[REDACTED:secret]" if key.lower() in CREDENTIAL_NAMES and item
            else _redacted(item, redact)
            for key, item in value.items()
        }  # fmt: skip
    if isinstance(value, list):
        return [_redacted(item, redact) for item in value]
    return value
