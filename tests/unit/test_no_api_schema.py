"""No service answers /openapi.json, /docs or /redoc (issue 22, finding 13): the
schema would tell anyone who reaches a port every route and parameter it has. The
apps are called in-process (their routing needs no store); the e2e test of model access
asks a real gateway process the same."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from watchllm_analytics.main import create_app as analytics_app
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_cache.service.app import create_app as cache_app
from watchllm_gateway.main import create_app as gateway_app
from watchllm_limiter.main import create_app as limiter_app

pytestmark = pytest.mark.unit

APPS: dict[str, Callable[[], FastAPI]] = {
    "gateway": gateway_app,
    "limiter": limiter_app,
    "cache": cache_app,
    "analytics": lambda: analytics_app(
        AnalyticsSettings(analytics_query_token="t" * 32, clickhouse_url="chdb:///nowhere")
    ),
}


@pytest.mark.parametrize("service", APPS)
@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_the_api_schema_and_its_pages_answer_404(service: str, path: str) -> None:
    app = APPS[service]()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.get(path)
    assert response.status_code == 404, (service, path, response.text[:200])
    assert '"paths"' not in response.text and "swagger" not in response.text.lower()
