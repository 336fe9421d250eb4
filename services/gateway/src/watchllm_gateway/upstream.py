"""Talking to providers: one pooled aiohttp session, timeouts, one attempt per call.

Why aiohttp and not httpx (which DESIGN.md and the foundation issue name): measured on
this machine against the fake provider, 16 concurrent requests, httpx 0.28 spent
1.1 ms of CPU per request and topped out near 900 requests/s on its own, aiohttp 3
spent 0.07 ms (``make bench`` shows the gateway-level effect). The gateway's target is
1,000 requests/s per worker, which httpx alone cannot reach. Nothing outside this
module knows which client is used: callers get ``UpstreamResponse``.

``UpstreamClient.attempt`` sends a request once to one deployment; what to do after a
failure (another deployment, a fallback model, the same one after a backoff) is
``routing.dispatch``'s choice. A failure before any answer raises ``AttemptFailed``,
which says whether the request may be sent to the same deployment again:
``resendable`` when nothing was sent (connection refused, DNS, connect timeout); not
when the connection broke *after* the request was written (the provider may have
accepted it, and would generate and bill it again) or the answer timed out (the
upstream may still be working on it).

Redirects are never followed: aiohttp would resend the request, with the provider key
in ``x-api-key`` (it drops only ``Authorization``), to whatever origin the ``Location``
names. A 3xx is returned like any answer and ``proxy`` maps it to 502.

Failure mapping: connection failure → 502, timeout → 504 (``AttemptFailed.error``);
HTTP answers are returned as they are. Mid-body failures raise ``UpstreamBodyError``
(``timed_out`` tells which).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import aiohttp
from prometheus_client import Histogram

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.settings import GatewaySettings, ProviderKind

if TYPE_CHECKING:
    from watchllm_gateway.routing.table import Deployment

# Answers another attempt can fix; any other answer is the caller's to have.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
_PASSED_THROUGH_HEADERS = {
    ProviderKind.OPENAI: ("openai-beta",),
    ProviderKind.ANTHROPIC: ("anthropic-version", "anthropic-beta"),
}
_DEFAULT_ANTHROPIC_VERSION = "2023-06-01"


def create_http_session(settings: GatewaySettings) -> aiohttp.ClientSession:
    """Call from a running event loop; close with ``await session.close()``."""
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_max_connections, ttl_dns_cache=300, keepalive_timeout=30
    )
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=settings.upstream_connect_timeout_seconds,
        sock_read=settings.upstream_read_timeout_seconds,
    )
    # No cookie jar: the session is shared by every caller, and a cookie a provider
    # sets (Cloudflare's ``__cf_bm`` on api.openai.com) would otherwise be sent back on
    # every later request, whoever makes it (tests/e2e/test_upstream_cookies.py).
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )  # fmt: skip


def provider_headers(provider: ProviderKind, incoming: Mapping[str, str]) -> dict[str, str]:
    """The caller's headers sent on to the provider (API version, beta features; the last
    value of a repeated one), with Anthropic's default version when the caller gave none.
    Computed once per request: the cache key covers exactly these (``cache_flow``)."""
    names = _PASSED_THROUGH_HEADERS[provider]
    sent = {name.lower(): value for name, value in incoming.items() if name.lower() in names}
    if provider is ProviderKind.ANTHROPIC:
        sent.setdefault("anthropic-version", _DEFAULT_ANTHROPIC_VERSION)
    return sent


class UpstreamBodyError(Exception):
    """The upstream failed after its headers: connection broken or read timed out."""

    def __init__(self, timed_out: bool) -> None:
        super().__init__("upstream read timed out" if timed_out else "upstream stream broke")
        self.timed_out = timed_out


@dataclass(slots=True)
class UpstreamResponse:
    """An upstream answer whose body is still to be read; ``close`` it when done."""

    _response: aiohttp.ClientResponse
    latency_seconds: float  # request sent to response headers
    attempts: int = 1  # of the request, this one included (``routing.dispatch`` sets it)

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamBodyError(isinstance(exc, TimeoutError)) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamBodyError(isinstance(exc, TimeoutError)) from exc

    async def drain(self, within_seconds: float) -> bool:
        """Read what is left of a body whose answer is already complete (a stream's
        chunked terminator after ``[DONE]``), so ``close`` can pool the connection;
        False when it did not end within ``within_seconds`` (then ``close`` drops it)."""
        try:
            async with asyncio.timeout(within_seconds):
                while await self._response.content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError):
            return False
        return True

    def close(self, abort: bool = False) -> None:
        """Return the connection to the pool, or drop it (``abort``) so the provider
        stops generating a stream nobody will read."""
        if abort:
            self._response.close()
        else:
            self._response.release()


class AttemptFailed(Exception):
    """One attempt got no answer. ``reason`` labels metrics: ``connect``, ``broken`` or
    ``timeout``; ``error`` is what the caller gets if no other attempt answers."""

    def __init__(self, reason: str, error: GatewayError) -> None:
        super().__init__(error.message)
        self.reason = reason
        self.error = error

    @property
    def resendable(self) -> bool:
        """Nothing reached the provider: the same deployment may be asked again."""
        return self.reason == "connect"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """What an answer asks to wait: ``retry-after-ms`` (OpenAI), else ``retry-after`` in
    seconds or as an HTTP date; None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class UpstreamClient:
    def __init__(self, session: aiohttp.ClientSession, metrics: GatewayMetrics) -> None:
        self._session = session
        self._metrics = metrics
        self._bound_latency: dict[ProviderKind, Histogram] = {}

    @staticmethod
    def _headers(deployment: Deployment, forwarded: Mapping[str, str]) -> dict[str, str]:
        out = {"content-type": "application/json", "accept-encoding": "identity", **forwarded}
        if deployment.provider is ProviderKind.ANTHROPIC:
            if deployment.api_key is not None:
                out["x-api-key"] = deployment.api_key.get_secret_value()
        elif deployment.provider is ProviderKind.AZURE:
            if deployment.api_key is not None:
                out["api-key"] = deployment.api_key.get_secret_value()
        elif deployment.api_key is not None:
            out["authorization"] = f"Bearer {deployment.api_key.get_secret_value()}"
        return out

    async def attempt(
        self, deployment: Deployment, path: str, body: bytes, forwarded: Mapping[str, str]
    ) -> UpstreamResponse:
        """Send once. ``forwarded``: the caller's headers that go on (``provider_headers``)."""
        url, out = deployment.base_url + path, self._headers(deployment, forwarded)
        started = time.perf_counter()
        try:
            response = await self._session.post(url, data=body, headers=out, allow_redirects=False)
        except aiohttp.ConnectionTimeoutError as exc:
            raise AttemptFailed("connect", _unreachable(504, "upstream_timeout", exc)) from exc
        except TimeoutError as exc:
            raise AttemptFailed("timeout", _unreachable(504, "upstream_timeout", exc)) from exc
        except aiohttp.ClientConnectorError as exc:  # nothing was sent
            error = _unreachable(502, "upstream_unreachable", exc)
            raise AttemptFailed("connect", error) from exc
        except aiohttp.ClientError as exc:  # sent, then the connection broke
            raise AttemptFailed("broken", GatewayError(
                502, "upstream_error",
                f"The upstream connection broke before its answer ({type(exc).__name__});"
                " not retried, as the provider may have received the request",
            )) from exc  # fmt: skip
        elapsed = time.perf_counter() - started
        self._latency(deployment.provider).observe(elapsed)
        return UpstreamResponse(response, elapsed)

    def _latency(self, provider: ProviderKind) -> Histogram:
        bound = self._bound_latency.get(provider)
        if bound is None:  # ``labels()`` takes a lock and builds a key: bind once
            bound = self._bound_latency[provider] = self._metrics.upstream_latency.labels(
                provider.value
            )
        return bound


def _unreachable(status: int, code: str, exc: BaseException) -> GatewayError:
    what = "timed out" if status == 504 else "is unreachable"
    return GatewayError(status, code, f"The upstream provider {what} ({type(exc).__name__})")
