"""Percentiles of load-tool latencies (times in seconds in, milliseconds out).

One definition for ``watchllm loadtest`` and the benchmarks in ``tests/bench``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

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
