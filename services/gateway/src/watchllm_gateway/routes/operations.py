"""Probes for operators and Kubernetes.

- ``/livez``: the process runs (no I/O; a failing liveness probe restarts the pod).
- ``/readyz``: Postgres and Redis answer, so requests can be served; 503 otherwise.
- ``/health``: the full report of DESIGN.md (see ``health``), plus the deployments this
  replica has cooling down, with the seconds each has left (``routing.cooldown``).

``/metrics`` is not here: it is served on a port of its own
(``WATCHLLM_GATEWAY_METRICS_PORT``, ``watchllm_shared.metrics_listener``), so the API
port, which faces callers, does not expose it.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from watchllm_gateway.deps import RuntimeDep

router = APIRouter()


@router.get("/livez")
async def livez() -> Response:
    return JSONResponse({"status": "alive"})


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> Response:
    database, redis_ok = await asyncio.gather(
        runtime.health.database_connected(), runtime.health.redis_connected()
    )
    ready = database and redis_ok
    body = {"status": "ready" if ready else "not_ready", "database": database, "redis": redis_ok}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/health")
async def health(runtime: RuntimeDep) -> Response:
    report = await runtime.health.report()
    if runtime.routing is not None:
        cooling = runtime.routing.cooldowns.cooling(runtime.routing.cooldowns.clock())
        report["deployments_cooling_down"] = {n: round(s, 1) for n, s in sorted(cooling.items())}
    return JSONResponse(report, status_code=503 if report["status"] == "unhealthy" else 200)
