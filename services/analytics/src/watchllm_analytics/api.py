"""HTTP: probes and the dashboard's read-only queries (metrics have a port of their own,
``WATCHLLM_ANALYTICS_METRICS_PORT``: ``__main__``).

- ``GET /livez``: the process runs (no I/O).
- ``GET /readyz``: schema applied, ClickHouse and Redis answer; 503 otherwise.
- ``GET /health``: ClickHouse, Redis, and the consumer group's lag, pending entries and
  dead-letter size (200, or 503 while the store is not open).
- ``GET /v1/queries``: the query definitions (name, description, parameter schema).
- ``POST /v1/queries/{name}``: run one with the JSON body as its parameters; answers a
  ``QueryResult``. 404 unknown name, 422 invalid parameters, 503 when ClickHouse cannot
  answer.

Both ``/v1/queries`` routes need ``Authorization: Bearer <WATCHLLM_ANALYTICS_QUERY_TOKEN>``
and answer 401 (before anything is read) without it or with another: their answers hold
every project's usage, key ids, models, costs and cache keys. The token is required
(``create_app`` refuses to build the app without one, ``MissingSecret``); were it
missing anyway, every query is refused, never answered. Probes stay open.
"""

from __future__ import annotations

import hmac
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from watchllm_analytics.clickhouse import ClickHouseUnavailable, RowsRejected
from watchllm_analytics.queries import UnknownQuery
from watchllm_analytics.runtime import AnalyticsService
from watchllm_shared.contracts.analytics_queries import ANALYTICS_QUERIES

router = APIRouter()


def get_service(request: Request) -> AnalyticsService:
    service: AnalyticsService = request.app.state.service
    return service


ServiceDep = Annotated[AnalyticsService, Depends(get_service)]


async def check_query_token(service: ServiceDep, authorization: str | None = Header(None)) -> None:
    token = service.settings.analytics_query_token
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode() if token is not None else b""
    if not (
        expected
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected)
    ):
        raise HTTPException(
            401,
            "missing or wrong bearer token: send 'Authorization: Bearer"
            " <WATCHLLM_ANALYTICS_QUERY_TOKEN>'",
            headers={"www-authenticate": "Bearer"},
        )


@router.get("/livez")
async def livez() -> Response:
    return JSONResponse({"status": "alive"})


@router.get("/readyz")
async def readyz(service: ServiceDep) -> Response:
    ready = service.health.ready
    body = {
        "status": "ready" if ready else "not_ready",
        **service.health.report(service.consumer.group),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/health")
async def health(service: ServiceDep) -> Response:
    report = service.health.report(service.consumer.group)
    return JSONResponse(report, status_code=503 if report["status"] == "unhealthy" else 200)


@router.get("/v1/queries", dependencies=[Depends(check_query_token)])
async def list_queries() -> Response:
    listing = [
        {"name": q.name, "description": q.description, "parameters": q.params.model_json_schema()}
        for q in ANALYTICS_QUERIES.values()
    ]
    return JSONResponse(listing)


@router.post("/v1/queries/{name}", dependencies=[Depends(check_query_token)])
async def run_query(
    name: str, service: ServiceDep, parameters: Annotated[dict[str, Any], Body()]
) -> Response:
    if service.queries is None:
        raise HTTPException(503, "the analytics store is not open yet")
    try:
        result = await service.queries.run(name, parameters)
    except UnknownQuery as exc:
        raise HTTPException(404, f"no query named {name!r}") from exc
    except ValidationError as exc:
        errors = orjson.loads(exc.json(include_url=False, include_context=False))
        return JSONResponse({"detail": errors}, status_code=422)
    except (ClickHouseUnavailable, RowsRejected) as exc:
        raise HTTPException(503, f"ClickHouse could not answer: {exc}") from exc
    body = orjson.dumps(result.model_dump(), default=_json_default, option=orjson.OPT_NAIVE_UTC)
    return Response(body, media_type="application/json")


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
