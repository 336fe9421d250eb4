"""Talking to providers: one pooled httpx client, timeouts, and retries.

Retries happen only before any byte has reached the caller, and only for answers that
a retry can fix: connection failures, 429 and 5xx (with capped exponential backoff
with jitter, honouring a short ``retry-after``). A read timeout is not retried: the
upstream may still be working on it and the caller has already waited the timeout.

Failure mapping (the final attempt): connection failure → 502, timeout → 504; HTTP
answers are returned as they are for ``proxy`` to map.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import httpx

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


def create_http_client(settings: GatewaySettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=settings.upstream_connect_timeout_seconds,
            read=settings.upstream_read_timeout_seconds,
            write=settings.upstream_read_timeout_seconds,
            pool=settings.upstream_connect_timeout_seconds,
        ),
        limits=httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=settings.upstream_max_connections,
        ),
        follow_redirects=False,
    )


@dataclass(slots=True)
class UpstreamResponse:
    response: httpx.Response  # opened in streaming mode: the caller must close it
    attempts: int
    latency_seconds: float  # request sent to response headers, last attempt


class UpstreamClient:
    def __init__(
        self,
        client: httpx.AsyncClient,
        metrics: GatewayMetrics,
        max_retries: int,
        backoff_seconds: float,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._max_retries = max_retries
        self._backoff = backoff_seconds

    def _request(
        self, route: Route, path: str, body: bytes, headers: dict[str, str]
    ) -> httpx.Request:
        out = {"content-type": "application/json", "accept-encoding": "identity"}
        for name in _PASSED_THROUGH_HEADERS[route.provider]:
            if name in headers:
                out[name] = headers[name]
        if route.provider is ProviderKind.ANTHROPIC:
            out.setdefault("anthropic-version", _DEFAULT_ANTHROPIC_VERSION)
            if route.api_key is not None:
                out["x-api-key"] = route.api_key.get_secret_value()
        elif route.api_key is not None:
            out["authorization"] = f"Bearer {route.api_key.get_secret_value()}"
        return self._client.build_request("POST", route.base_url + path, content=body, headers=out)

    async def send(
        self, route: Route, path: str, body: bytes, headers: dict[str, str]
    ) -> UpstreamResponse:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = await self._client.send(
                    self._request(route, path, body, headers), stream=True
                )
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                    if await self._may_retry(route, attempt, "connect", None):
                        continue
                raise GatewayError(
                    504,
                    "upstream_timeout",
                    f"The upstream provider timed out ({type(exc).__name__})",
                    upstream_attempts=attempt,
                ) from exc
            except httpx.TransportError as exc:
                if await self._may_retry(route, attempt, "connect", None):
                    continue
                raise GatewayError(
                    502,
                    "upstream_unreachable",
                    f"The upstream provider is unreachable ({type(exc).__name__})",
                    upstream_attempts=attempt,
                ) from exc
            elapsed = time.perf_counter() - started
            self._metrics.upstream_latency.labels(route.provider.value).observe(elapsed)
            if response.status_code in RETRYABLE_STATUSES:
                retry_after = response.headers.get("retry-after")
                if await self._may_retry(route, attempt, str(response.status_code), retry_after):
                    await response.aclose()
                    continue
            return UpstreamResponse(response, attempt, elapsed)

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
