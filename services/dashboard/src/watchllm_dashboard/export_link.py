"""Export links: what the Requests page hands the browser so it can download the whole
filtered log from the export route (``export_route``).

A link carries a grant: the file's kind and name, the filters (the project among them:
``contracts.request_log_queries.RequestFilter``), the session that asked for it (the
SHA-256 of its token, never the token) and an expiry. The grant is JSON, base64url, and
signed with HMAC-SHA256 under the dashboard's export secret (``Runtime.export_secret``:
``WATCHLLM_DASHBOARD_EXPORT_SECRET``, or one made at start, per process). The route
trusts nothing in a link but what the signature covers, so a link cannot be pointed at
another project, widened to other filters or kept past its expiry: any change to one
byte, another secret, or an expired link is :class:`LinkRefused` (403). It also asks
Postgres whether the session is still signed in (``SessionStore.live_user``): signing
out, an expired session or a disabled user ends the links the session made.

A link lasts ``LIFETIME`` (the page makes a new one on every view); the download it
starts may run longer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

from pydantic import ValidationError

from watchllm_dashboard.data.export import KINDS, Kind
from watchllm_shared.contracts.request_log_queries import RequestFilter

LIFETIME = timedelta(minutes=15)
PATH = "/export/requests"
_CONTEXT = b"watchllm-dashboard-export-v1\x00"


class LinkRefused(Exception):
    """The link is not one this dashboard made, was changed, or has expired."""


@dataclass(frozen=True, slots=True)
class Grant:
    kind: Kind
    stem: str  # the file's name without its kind
    filters: dict[str, Any]  # RequestFilter's fields, typed (UUIDs, datetimes)
    session: bytes  # SHA-256 of the session's token (``sessions.token_hash_of``)
    expires: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, _CONTEXT + body.encode("ascii"), hashlib.sha256).digest()


def sign(grant: Grant, secret: bytes) -> str:
    """The grant as a link's ``t`` parameter."""
    payload = {
        "k": grant.kind,
        "n": grant.stem,
        "f": RequestFilter.model_validate(grant.filters).model_dump(mode="json"),
        "s": _b64(grant.session),
        "e": int(grant.expires.timestamp()),
    }
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64(_mac(secret, body))}"


def url(token: str) -> str:
    """Relative to the page (so it holds behind a proxy's path prefix too)."""
    return f"{PATH.lstrip('/')}?t={quote(token, safe='')}"


def verify(token: str, secret: bytes, now: datetime) -> Grant:
    """The grant the link carries, or LinkRefused saying why (never which byte)."""
    body, _, mac = token.partition(".")
    try:
        genuine = hmac.compare_digest(_unb64(mac), _mac(secret, body))
    except (ValueError, UnicodeEncodeError):
        genuine = False
    if not genuine:
        raise LinkRefused("this export link is not one this dashboard made, or was changed")
    try:
        payload = json.loads(_unb64(body))
        kind, expires = payload["k"], datetime.fromtimestamp(int(payload["e"]), UTC)
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}")
        filters = RequestFilter.model_validate(payload["f"]).model_dump()
        grant = Grant(cast(Kind, kind), str(payload["n"]), filters, _unb64(payload["s"]),
                      expires)  # fmt: skip
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        # Signed but unreadable: a secret shared with another version. Say so plainly.
        raise LinkRefused("this export link cannot be read by this dashboard") from exc
    if now >= grant.expires:
        raise LinkRefused(
            "this export link has expired (links last"
            f" {int(LIFETIME.total_seconds() // 60)} minutes): open the Requests page"
            " again and export from there"
        )
    return grant
