"""Talking to providers: one pooled aiohttp session, timeouts, and retries.

Why aiohttp and not httpx (which DESIGN.md and the foundation issue name): measured on
this machine against the fake provider, 16 concurrent requests, httpx 0.28 spent
1.1 ms of CPU per request and topped out near 900 requests/s on its own, aiohttp 3
spent 0.07 ms (``make bench`` shows the gateway-level effect). The gateway's target is
1,000 requests/s per worker, which httpx alone cannot reach. Nothing outside this
module knows which client is used: callers get ``UpstreamResponse``.

Retries happen only before any byte has reached the caller, and only for answers that
a retry can fix: failures to connect (refused, DNS, connect timeout), 429 and 5xx
(with capped exponential backoff with jitter, honouring a short ``retry-after``). A
connection that breaks *after* the request was written (the provider may have accepted
it, and would generate and bill it again) and a read timeout (the upstream may still
be working on it) are not retried: 502 and 504, and the caller's SDK decides, as
aiohttp itself does for non-idempotent requests.

Redirects are never followed: aiohttp would resend the request, with the provider key
in ``x-api-key`` (it drops only ``Authorization``), to whatever origin the ``Location``
names. A 3xx is returned like any answer and ``proxy`` maps it to 502.

Failure mapping (the final attempt): connection failure → 502, timeout → 504; HTTP
answers are returned as they are for ``proxy`` to map. Mid-body failures raise
``UpstreamBodyError`` (``timed_out`` tells which).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
from prometheus_client import Histogram

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.settings import GatewaySettings, ProviderKind, Route

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
_MAX_RETRY_AFTER_SECONDS = 5.0
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
    attempts: int
    latency_seconds: float  # request sent to response headers, last attempt

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


class UpstreamClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        metrics: GatewayMetrics,
        max_retries: int,
        backoff_seconds: float,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._bound_latency: dict[ProviderKind, Histogram] = {}

    @staticmethod
    def _headers(route: Route, forwarded: Mapping[str, str]) -> dict[str, str]:
        out = {"content-type": "application/json", "accept-encoding": "identity", **forwarded}
        if route.provider is ProviderKind.ANTHROPIC:
            if route.api_key is not None:
                out["x-api-key"] = route.api_key.get_secret_value()
        elif route.api_key is not None:
            out["authorization"] = f"Bearer {route.api_key.get_secret_value()}"
        return out

    async def send(
        self, route: Route, path: str, body: bytes, forwarded: Mapping[str, str]
    ) -> UpstreamResponse:
        """``forwarded``: the caller's headers that go on, from ``provider_headers``."""
        url, out = route.base_url + path, self._headers(route, forwarded)
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = await self._session.post(
                    url, data=body, headers=out, allow_redirects=False
                )
            except aiohttp.ConnectionTimeoutError as exc:
                if await self._may_retry(route, attempt, "connect", None):
                    continue
                raise _unreachable(504, "upstream_timeout", exc, attempt) from exc
            except TimeoutError as exc:
                raise _unreachable(504, "upstream_timeout", exc, attempt) from exc
            except aiohttp.ClientConnectorError as exc:  # nothing was sent
                if await self._may_retry(route, attempt, "connect", None):
                    continue
                raise _unreachable(502, "upstream_unreachable", exc, attempt) from exc
            except aiohttp.ClientError as exc:  # sent, then the connection broke
                raise GatewayError(
                    502, "upstream_error",
                    f"The upstream connection broke before its answer ({type(exc).__name__});"
                    " not retried, as the provider may have received the request",
                    upstream_attempts=attempt,
                ) from exc  # fmt: skip
            elapsed = time.perf_counter() - started
            self._latency(route.provider).observe(elapsed)
            if response.status in RETRYABLE_STATUSES:
                retry_after = response.headers.get("retry-after")
                if await self._may_retry(route, attempt, str(response.status), retry_after):
                    response.release()
                    continue
            return UpstreamResponse(response, attempt, elapsed)

    def _latency(self, provider: ProviderKind) -> Histogram:
        bound = self._bound_latency.get(provider)
        if bound is None:  # ``labels()`` takes a lock and builds a key: bind once
            bound = self._bound_latency[provider] = self._metrics.upstream_latency.labels(
                provider.value
            )
        return bound

    async def _may_retry(
        self, route: Route, attempt: int, reason: str, retry_after: str | None
    ) -> bool:
        if attempt > self._max_retries:
            return False
        self._metrics.upstream_retries.labels(route.provider.value, reason).inc()
        delay = self._backoff * (2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311
        if retry_after is not None:
            try:
                delay = max(delay, min(float(retry_after), _MAX_RETRY_AFTER_SECONDS))
            except ValueError:
                pass
        await asyncio.sleep(delay)
        return True


def _unreachable(status: int, code: str, exc: BaseException, attempts: int) -> GatewayError:
    what = "timed out" if status == 504 else "is unreachable"
    return GatewayError(
        status, code, f"The upstream provider {what} ({type(exc).__name__})",
        upstream_attempts=attempts,
    )  # fmt: skip
