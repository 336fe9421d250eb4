"""Percentiles and per-run summaries of load-tool records (all times in seconds)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0, 100.0)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks.

    Same definition as numpy's default: rank ``(n - 1) * q / 100``. ``sorted_values``
    must be sorted ascending and non-empty.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile out of range: {q}")
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def distribution(values: Iterable[float]) -> dict[str, float] | None:
    """p50/p90/p99/max (and mean) in milliseconds; None when there is nothing."""
    ordered = sorted(values)
    if not ordered:
        return None
    out = {f"p{q:g}": percentile(ordered, q) * 1000 for q in PERCENTILES[:-1]}
    out["max"] = ordered[-1] * 1000
    out["mean"] = sum(ordered) / len(ordered) * 1000
    return out


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
