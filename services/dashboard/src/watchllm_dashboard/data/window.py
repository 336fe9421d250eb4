"""The time window every page reads: the last N hours up to now, in UTC, as whole hours.

The hourly figures (totals, charts, per model, per key) come from an hourly rollup and
can only cover whole hours, while the request log can be cut anywhere. So a window
starts on an hour: "Last 24 hours" is the current hour and the 23 before it. Started at
``now - 24 h`` instead, the rollup counted a 25th hour (up to two hours for "Last hour")
that the request log left out, and the pages disagreed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

RANGES: dict[str, timedelta] = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Last 90 days": timedelta(days=90),
}
DEFAULT_RANGE = "Last 24 hours"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    label: str
    start: datetime
    end: datetime

    @classmethod
    def last(cls, label: str, now: datetime | None = None) -> TimeWindow:
        end = now or datetime.now(UTC)
        this_hour = end.replace(minute=0, second=0, microsecond=0)
        return cls(label, this_hour - RANGES[label] + timedelta(hours=1), end)

    def hours(self) -> list[datetime]:
        """Every whole hour the hourly queries cover (they include both ends' hours)."""
        first = self.start.replace(minute=0, second=0, microsecond=0)
        last = self.end.replace(minute=0, second=0, microsecond=0)
        count = int((last - first) / timedelta(hours=1)) + 1
        return [first + timedelta(hours=i) for i in range(count)]

    def params(self) -> dict[str, datetime]:
        return {"start": self.start, "end": self.end}
