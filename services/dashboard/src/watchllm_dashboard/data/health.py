"""What the gateway's ``GET /health`` says about each service and store, plus the
analytics service's own report (consumer lag, pending entries, dead letters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: str  # healthy | degraded | unhealthy | unreachable
    services: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def fetch_health(http: httpx.Client, base_url: str) -> HealthReport:
    """GET ``base_url``/health; a service that does not answer is "unreachable"."""
    try:
        reply = http.get(base_url.rstrip("/") + "/health", timeout=5.0)
        body = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        return HealthReport("unreachable", error=f"{type(exc).__name__}: {exc}")
    if not isinstance(body, dict):
        return HealthReport("unreachable", error=f"unexpected answer ({reply.status_code})")
    services = body.get("services")
    return HealthReport(
        status=str(body.get("status", "unknown")),
        services={str(k): str(v) for k, v in services.items()}
        if isinstance(services, dict)
        else {},
        detail={k: v for k, v in body.items() if k not in ("status", "services")},
    )
