"""Per-run summaries of load-tool records (all times in seconds).

The percentiles are the product's (``watchllm loadtest`` computes them the same way).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from watchllm_shared.cli.deployment.stats import PERCENTILES, distribution, percentile

__all__ = ["PERCENTILES", "RunSummary", "added", "distribution", "percentile"]


@dataclass
class RunSummary:
    """What one run (or several merged slices) of the load tool measured."""

    requests: int  # scheduled (open loop) or started (closed loop)
    ok: int
    errors: int
    error_kinds: dict[str, int]
    duration_s: float  # first scheduled send to last completion
    throughput_rps: float  # successful responses per second of duration
    latency_ms: dict[str, float] | None  # from the scheduled send time
    service_ms: dict[str, float] | None  # from the actual send
    ttfb_ms: dict[str, float] | None  # scheduled send to first body byte
    send_lag_ms: dict[str, float] | None  # actual send minus scheduled send
    late_sends: int  # sent more than ``late_threshold`` after their scheduled time
    queued_at_cap: int  # found every connection busy and the pool at its cap
    connections: int  # connections opened
    sse_events: int  # SSE events received (streams), for a sanity check

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def added(gateway: dict[str, float] | None, direct: dict[str, float] | None) -> dict[str, float]:
    """Gateway minus direct at each percentile (what the gateway adds), in ms."""
    if gateway is None or direct is None:
        return {}
    return {k: gateway[k] - direct[k] for k in gateway if k in direct}
