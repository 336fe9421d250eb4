"""Numbers for humans: counts, money, percentages, durations, moments."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def count(value: float | None) -> str:
    """1,234 below ten thousand; 12.3k, 4.56M, 7.89B above."""
    if _missing(value):
        return "—"
    assert value is not None
    number = float(value)
    steps = ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k"))
    for index, (threshold, size, suffix) in enumerate(steps):
        if abs(number) >= threshold:
            scaled = float(f"{number / size:.3g}")  # rounded first: 999,999 → 1000k
            if abs(scaled) >= 1000 and index > 0:  # … so one step up: 1M
                bigger_size, bigger_suffix = steps[index - 1][1], steps[index - 1][2]
                return f"{float(f'{number / bigger_size:.3g}'):g}{bigger_suffix}"
            return f"{scaled:g}{suffix}" if abs(scaled) < 1000 else f"{scaled:,.0f}{suffix}"
    return f"{number:,.0f}"


def money(value: float | None) -> str:
    """$1,234.56; amounts under a dollar keep their first significant digits ($0.0042)."""
    if _missing(value):
        return "—"
    assert value is not None
    amount = float(value)
    if amount == 0:
        return "$0.00"
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    digits = max(2, 1 - math.floor(math.log10(abs(amount))))
    return f"${amount:.{min(digits, 8)}f}"


def percent(part: float | None, whole: float | None) -> str:
    if _missing(part) or _missing(whole) or not whole:
        return "—"
    assert part is not None and whole is not None
    share = 100 * float(part) / float(whole)
    # Two decimals only just under 100% (99.97%, not a rounded 100.0%); 200.0% above it.
    return f"{share:.1f}%" if share < 99.95 or share >= 100 else f"{share:.2f}%"


def duration_ms(value: float | None) -> str:
    if _missing(value):
        return "—"
    assert value is not None
    if value < 1:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.2f} s"


def span(seconds: float | None) -> str:
    """A duration for people: 45 s, 12 min, 3 h 20 min, 2 d 4 h."""
    if _missing(seconds):
        return "—"
    assert seconds is not None
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    now = now or datetime.now(UTC)
    seconds = (now - moment).total_seconds()
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def moment(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
