"""Test directives carried inside the request text, so they pass through any gateway.

The fake looks for them in the last user message (chat APIs) or in the inputs
(embeddings). Several may appear together; they are removed from the echoed reply.

- ``[[fake:status=NNN]]``: answer with HTTP status NNN (400-599) and an error body in the
  endpoint's provider shape.
- ``[[fake:retry_after=SECONDS]]``: an error answer (by ``status``, ``fail_times`` or
  the error rate) carries ``retry-after: SECONDS``.
- ``[[fake:delay=SECONDS]]``: sleep that long before the response headers (replaces
  ``default_delay_seconds`` for this request).
- ``[[fake:fail_times=N:key=K]]``: the first N requests carrying key K get a 500, later
  ones succeed; the counter per K lives in the app's memory (tests of gateway retries).
- ``[[fake:stream_fail_after=N]]``: a streamed response sends N events, then the
  connection is dropped without ending the chunked body (the client sees a broken
  stream). Ignored by non-streamed requests.
- ``[[fake:tool_call=NAME]]``: the answer is a call of the tool NAME (OpenAI
  ``tool_calls``, Anthropic ``tool_use``; streamed, its arguments come in pieces) with
  the arguments ``{"text": <the reply text>}``, instead of a text reply.

A malformed or unknown directive is answered with a 400, so typos fail loudly.
Order of effects: delay, then status, then fail_times, then the random error rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_MARKER = "[[fake:"
_DIRECTIVE = re.compile(r"\[\[fake:([a-z_]+)=([^\]]*)\]\]")
_FAIL_TIMES = re.compile(r"(\d+):key=(\S+)")


class DirectiveError(ValueError):
    """A ``[[fake:...]]`` directive the fake does not understand."""


@dataclass(frozen=True, slots=True)
class Directives:
    status: int | None = None
    delay: float | None = None
    fail_times: int = 0
    fail_key: str = ""
    stream_fail_after: int | None = None
    retry_after: str | None = None
    tool_call: str | None = None


NONE = Directives()


def parse_directives(text: str) -> Directives:
    """The directives found in ``text``; raises ``DirectiveError`` for bad ones."""
    if _MARKER not in text:
        return NONE
    matches = _DIRECTIVE.findall(text)
    if not matches:
        raise DirectiveError("text contains '[[fake:' but no well-formed directive")
    directives = NONE
    for name, value in matches:
        try:
            directives = _apply(directives, name, value)
        except ValueError as exc:
            raise DirectiveError(f"bad fake directive [[fake:{name}={value}]]: {exc}") from exc
    return directives


def _apply(directives: Directives, name: str, value: str) -> Directives:
    if name == "status":
        status = int(value)
        if not 400 <= status <= 599:
            raise ValueError("status must be within 400-599")
        return replace(directives, status=status)
    if name == "delay":
        delay = float(value)
        if not 0.0 <= delay <= 600.0:
            raise ValueError("delay must be within 0-600 seconds")
        return replace(directives, delay=delay)
    if name == "fail_times":
        match = _FAIL_TIMES.fullmatch(value)
        if match is None:
            raise ValueError("expected N:key=K")
        return replace(directives, fail_times=int(match[1]), fail_key=match[2])
    if name == "retry_after":
        if float(value) < 0:
            raise ValueError("must be >= 0")
        return replace(directives, retry_after=value)
    if name == "tool_call":
        if not value.isidentifier():
            raise ValueError("a tool name: letters, digits and underscores")
        return replace(directives, tool_call=value)
    if name == "stream_fail_after":
        count = int(value)
        if count < 0:
            raise ValueError("must be >= 0")
        return replace(directives, stream_fail_after=count)
    raise ValueError("unknown directive")


def strip_directives(text: str) -> str:
    """``text`` without its directives."""
    return _DIRECTIVE.sub("", text) if _MARKER in text else text


class FailCounter:
    """How many times each ``fail_times`` key has failed so far."""

    def __init__(self) -> None:
        self._failed: dict[str, int] = {}

    def should_fail(self, directives: Directives) -> bool:
        """True (and counted) while the key has failed fewer than N times."""
        if directives.fail_times <= 0:
            return False
        failed = self._failed.get(directives.fail_key, 0)
        if failed >= directives.fail_times:
            return False
        self._failed[directives.fail_key] = failed + 1
        return True
