"""Redaction of logged bodies, inside the gateway: a body leaves the gateway only
redacted (``body_log``), so no secret or personal datum it masks reaches Redis,
ClickHouse, the dashboard or a backup. Elsewhere would be later: analytics would hold
the raw text in its stream and its memory first.

Always: provider keys (``sk-…``, ``sk-ant-…``), WatchLLM keys (``lgw_…``) and the
values of ``Authorization``/``Bearer``. Then, as the project chose (``REDACTIONS``):
``email`` addresses; ``card`` numbers, 13 to 19 digits (spaces or dashes between) that
pass the Luhn check; ``phone`` numbers, 9 to 15 digits starting with ``+`` or ``(`` or
grouped by spaces, dashes or parentheses (bare digits are ids and timestamps; a date
and a time are left alone); and any regular expression of the project's own. Each
match becomes ``[REDACTED:<kind>]`` (``regex`` for the project's own).

``body_log`` applies it to a JSON body's string values one by one (decoded, so JSON
escapes such as ``\\u0040`` for ``@`` hide nothing; a value whose name is a credential's,
``CREDENTIAL_NAMES``, is masked whole), and to other text as it is. A project's regular
expression runs on the gateway's event loop after the answer was sent; the operator who
sets it (an admin) owns its cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

Redact = Callable[[str], str]

CREDENTIAL_NAMES = frozenset(
    ("authorization", "proxy-authorization", "x-api-key", "api-key", "api_key", "apikey")
)

_SECRETS = re.compile(
    r"sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{8,}|lgw_[A-Za-z0-9_\-]{8,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"
)
# A credential named as such (JSON or header form): its whole value, quoted or not.
_NAMED_SECRET = re.compile(
    r"(?i)(\"?(?:authorization|proxy-authorization|x-api-key|api[_-]key)\"?\s*[:=]\s*)"
    r"(\"(?:[^\"\\]|\\.)*\"|[^\r\n,;}\"]+)"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\d\-])\d(?:[ \-]?\d){12,18}(?![\d\-])")
_GROUPED = re.compile(r"\d[ ()\-]+\d")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().\-]{7,20}\d(?!\w)")


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _named_secret(match: re.Match[str]) -> str:
    quoted = match.group(2).startswith('"')
    return match.group(1) + ('"[REDACTED:secret]"' if quoted else "[REDACTED:secret]")


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[REDACTED:card]" if _luhn(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    if _DATE.search(text):  # 2026-12-04 12:30 is a time, not a number to call
        return text
    if not (text[0] in "+(" or _GROUPED.search(text)):  # bare digits: an id, a timestamp
        return text
    return "[REDACTED:phone]" if 9 <= sum(char.isdigit() for char in text) <= 15 else text


def _secrets(text: str) -> str:
    return _NAMED_SECRET.sub(_named_secret, _SECRETS.sub("[REDACTED:secret]", text))


# Cheap tests first (C-speed ``in`` and ``translate``): most prose holds no key, no "@"
# and few digits, and each pattern then costs nothing (they took 70-270 µs per 1,300
# characters each under load; a 2 KB request with its 1 KB answer cost ~1 ms, now
# ``_SECRET_MARKS`` scans and a digit count; see README "Request and answer bodies").
_SECRET_MARKS = ("sk-", "lgw_", "bearer", "authorization", "api-key", "api_key", "apikey")
_NOT_DIGITS = str.maketrans("", "", "0123456789")


def _digits(text: str) -> int:
    return len(text) - len(text.translate(_NOT_DIGITS))


@lru_cache(maxsize=1024)
def redactor(redactions: Sequence[str]) -> Redact:
    """The redaction of one project's setting (a tuple, as the key grant holds it),
    compiled once per distinct setting. The accounts module checked every pattern; one
    that still does not compile here is skipped rather than failing requests."""
    email, card, phone = ("email" in redactions, "card" in redactions, "phone" in redactions)
    own: list[re.Pattern[str]] = []
    for item in redactions:
        if item in ("email", "card", "phone", "secret"):
            continue
        try:
            own.append(re.compile(item))
        except re.error:
            continue

    def redact(text: str) -> str:
        lower = text.lower()
        if any(mark in lower for mark in _SECRET_MARKS):
            text = _secrets(text)
        if email and "@" in text:
            text = _EMAIL.sub("[REDACTED:email]", text)
        digits = _digits(text) if card or phone else 0
        if card and digits >= 13:  # before phone: a card is digits too
            text = _CARD.sub(_card, text)
        if phone and digits >= 9:
            text = _PHONE.sub(_phone, text)
        for pattern in own:
            text = pattern.sub("[REDACTED:regex]", text)
        return text

    return redact
