"""Request and answer bodies of projects that log them (issue 17), from the gateway to
analytics on a stream of their own.

Why not a field of ``RequestCompleted``: a body is up to two ``MAX_BODY_CHARS`` where an
event is ~1 KB, and the limiter reads every event of the requests stream (token and
spend charges) while it trims that stream to what its groups still need. Bodies there
would multiply what the limiter reads and what Redis holds for every project, including
the many that log none. Here only analytics reads them (group ``analytics-bodies``), the
stream is capped on its own (``REQUEST_BODIES_MAXLEN``), and a project that logs nothing
costs nothing. The body and the event of one request share ``request_id``.

Contract rules as for the events (``events``): add-only fields with defaults, unknown
fields ignored, a breaking change is a new stream name.

What the gateway guarantees before a body leaves it: it was redacted (secrets always:
provider keys ``sk-…``/``sk-ant-…``, WatchLLM keys ``lgw_…``, Authorization and Bearer
values; then the project's chosen ``REDACTIONS`` and regexes) and cut to
``MAX_BODY_CHARS`` with ``TRUNCATED_MARKER`` at the end, so a cut is visible.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

REQUEST_BODIES_STREAM = "watchllm.request-bodies.v1"
# ≤ ~64 KiB an entry: 10,000 bound the stream while analytics is behind; what it
# stored is trimmed every second (``stream_trim``, by analytics).
REQUEST_BODIES_MAXLEN = 10_000

MAX_BODY_CHARS = 32_768
TRUNCATED_MARKER = "…[truncated by WatchLLM: {omitted} more characters]"

DEFAULT_RETENTION_DAYS = 30  # shorter than the request log's (365 by default)
MAX_RETENTION_DAYS = 365

# Named redactions a project may choose (``secret`` is applied whatever it chooses);
# anything else in its list is a regular expression of its own.
REDACTIONS = ("email", "phone", "card", "secret")
DEFAULT_REDACTIONS = REDACTIONS
MAX_REDACTIONS = 20
MAX_PATTERN_CHARS = 512


def redaction_error(item: str) -> str | None:
    """Why ``item`` cannot be a project's redaction (None: it can): a named one or a
    regular expression Python compiles."""
    if item in REDACTIONS:
        return None
    if not item or len(item) > MAX_PATTERN_CHARS:
        return f"a redaction pattern must have 1 to {MAX_PATTERN_CHARS} characters"
    try:
        re.compile(item)
    except re.error as exc:
        return f"{item!r} is not a valid regular expression: {exc}"
    return None


def truncate(text: str, limit: int = MAX_BODY_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the marker saying how many were left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATED_MARKER.format(omitted=len(text) - limit)


class RequestBodies(BaseModel):
    """One request's bodies, redacted and capped (``response`` '' when none came)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    request_id: str = Field(min_length=1, max_length=64)
    project_id: UUID
    occurred_at: datetime
    endpoint: str = Field(max_length=64)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, ge=1, le=MAX_RETENTION_DAYS)
    request: str = Field(max_length=MAX_BODY_CHARS + 64)
    response: str = Field(default="", max_length=MAX_BODY_CHARS + 64)

    def to_stream_fields(self) -> dict[str, bytes]:
        return {"data": self.model_dump_json().encode()}
