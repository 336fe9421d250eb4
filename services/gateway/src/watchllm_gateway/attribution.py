"""Who and what a request is for: the caller's custom properties and its end user.

- ``x-watchllm-property-<name>: <value>`` headers tag a request (a feature, a customer,
  an environment…); the request log keeps them as a map and the analytics queries
  group and filter by them. Bounds, each refusal a 400 ``invalid_property_header``
  (``invalid_user_header``) in the caller's API shape naming the header, before the
  body is read (nothing is sent, charged or cached): at most ``MAX_PROPERTIES`` per
  request; a name of 1 to ``MAX_NAME_CHARS`` characters among ``a-z 0-9 . _ -``
  (header names are case insensitive: names are stored lower case); a value of 1 to
  ``MAX_VALUE_CHARS`` characters of UTF-8 text without control characters; each name
  once.
- The end user: the ``x-watchllm-user`` header (the same value rules, at most
  ``MAX_USER_CHARS``), else the body's own field, OpenAI's ``user`` or Anthropic's
  ``metadata.user_id``. The header wins: it is what the caller told WatchLLM, while the
  body field is the provider's and goes to the provider unchanged. A body field that is
  not a string is not recorded (the provider judges it), and only its first
  ``MAX_USER_CHARS`` characters are.

WatchLLM's own ``x-watchllm-*`` headers never reach the provider: ``upstream`` forwards
only the headers it names (``provider_headers``), and none of them is one of ours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.settings import ProviderKind

PROPERTY_PREFIX = "x-watchllm-property-"
USER_HEADER = "x-watchllm-user"
MAX_PROPERTIES = 20
MAX_NAME_CHARS = 64
MAX_VALUE_CHARS = 256
MAX_USER_CHARS = 256

_PREFIX = PROPERTY_PREFIX.encode()
_USER = USER_HEADER.encode()
_OURS = b"x-watchllm-"
_NAME = re.compile(rf"[a-z0-9._-]{{1,{MAX_NAME_CHARS}}}").fullmatch
_CONTROL = re.compile(r"[\x00-\x1f\x7f]").search


@dataclass(frozen=True, slots=True)
class Attribution:
    properties: dict[str, str]
    user: str | None  # the x-watchllm-user header's

    def end_user(self, api: ProviderKind, body: dict[str, Any]) -> str | None:
        """The header's user, else the body's own field (see the module docstring)."""
        if self.user is not None:
            return self.user
        if api is ProviderKind.ANTHROPIC:
            metadata = body.get("metadata")
            named = metadata.get("user_id") if isinstance(metadata, dict) else None
        else:
            named = body.get("user")
        return named[:MAX_USER_CHARS] if isinstance(named, str) and named else None


NO_ATTRIBUTION = Attribution({}, None)


def read_attribution(raw_headers: Sequence[tuple[bytes, bytes]]) -> Attribution:
    """The request's properties and user header; raises a 400 naming a bad header.
    ``raw_headers``: the ASGI scope's (names lower case)."""
    properties: dict[str, str] | None = None
    user: str | None = None
    for name, value in raw_headers:
        if not name.startswith(_OURS):  # nearly every header: one prefix test
            continue
        if name == _USER:
            if user is not None:
                raise _refused(USER_HEADER, "is given more than once")
            user = _text(USER_HEADER, value, MAX_USER_CHARS)
        elif name.startswith(_PREFIX):
            header = name.decode("latin-1")
            key = header[len(PROPERTY_PREFIX) :]
            if not _NAME(key):
                raise _refused(header, f"must name a property of 1 to {MAX_NAME_CHARS}"
                               " characters among a-z, 0-9, '.', '_' and '-'")  # fmt: skip
            properties = {} if properties is None else properties
            if key in properties:
                raise _refused(header, "is given more than once")
            if len(properties) == MAX_PROPERTIES:
                raise _refused(header, f"is one property too many (at most {MAX_PROPERTIES})")
            properties[key] = _text(header, value, MAX_VALUE_CHARS)
    if properties is None and user is None:
        return NO_ATTRIBUTION
    return Attribution(properties or {}, user)


def _text(header: str, raw: bytes, limit: int) -> str:
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(header, "is not UTF-8 text") from None
    if not value:
        raise _refused(header, "is empty")
    if len(value) > limit:
        raise _refused(header, f"is longer than {limit} characters")
    if _CONTROL(value):
        raise _refused(header, "contains a control character")
    return value


def _refused(header: str, why: str) -> GatewayError:
    code = "invalid_user_header" if header == USER_HEADER else "invalid_property_header"
    return GatewayError(400, code, f"Header {header} {why}")
