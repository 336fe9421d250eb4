"""The time window every page reads: the last N hours (or days) up to now, in UTC, exact.

"Last hour" is the last 60 minutes. It used to be the current hour so far (windows
started on an hour, for the hourly rollup's sake), so at 13:00:19 it showed nothing of
the requests sent minutes before. The analytics queries now read the whole hours inside
the window from the rollup and the partial hours at its ends from the rows, so counts,
sums, the request log and the charts all cover exactly ``start`` to ``end``. Per-hour
charts show the first and last hour only as far as the window covers them. Latency
percentiles over the whole window are the exception (they cannot be added up): they
cover the whole hours the window touches, ``percentile_hours`` (pages say so).
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


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _span(start: datetime, end: datetime) -> str:
    """``2026-03-01 12:20 → 13:20 UTC`` (the date once when both ends share it)."""
    first = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    last_format = "%H:%M" if start.date() == end.date() else "%Y-%m-%d %H:%M"
    return f"{first} → {end.astimezone(UTC).strftime(last_format)} UTC"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    label: str
    start: datetime
    end: datetime

    @classmethod
    def last(cls, label: str, now: datetime | None = None) -> TimeWindow:
        end = now or datetime.now(UTC)
        return cls(label, end - RANGES[label], end)

    def hours(self) -> list[datetime]:
        """Every hour the window touches, the first and last only in part."""
        first, last = _hour(self.start), _hour(self.end)
        count = int((last - first) / timedelta(hours=1)) + 1
        return [first + timedelta(hours=i) for i in range(count)]

    def params(self) -> dict[str, datetime]:
        return {"start": self.start, "end": self.end}

    def describe(self) -> str:
        """What the window covers, for the page: ``Last hour: 2026-03-01 12:20 → 13:20 UTC``."""
        return f"{self.label}: {_span(self.start, self.end)}"

    def percentile_hours(self) -> str:
        """The hours window-wide latency percentiles cover (whole hours it touches)."""
        return _span(_hour(self.start), self.end)
