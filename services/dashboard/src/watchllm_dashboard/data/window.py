"""The time window every page reads: the last N hours (or days) up to now, in UTC, exact.

"Last hour" is the last 60 minutes. It used to be the current hour so far (windows
started on an hour, for the hourly rollup's sake), so at 13:00:19 it showed nothing of
the requests sent minutes before. The analytics queries now read the whole hours inside
the window from the rollup and the partial hours at its ends from the rows, so counts,
sums, the request log and the charts all cover exactly ``start`` to ``end``. Per-hour
charts show the first and last hour only as far as the window covers them. Latency
percentiles over the whole window are the exception (they cannot be added up): they
cover the whole hours the window touches, ``percentile_hours`` (pages say so).

A custom window (``TimeWindow.custom``) runs from one instant to another, both in UTC,
typed as ``2026-03-01 12:00`` (or ISO 8601; a date alone is its midnight). It must end
after it starts, no later than now, and span at most ``MAX_CUSTOM`` (the longest preset):
anything else is a :class:`RangeRefused` whose message says what to change.
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
CUSTOM = "Custom"
MAX_CUSTOM = max(RANGES.values())
EXAMPLE = "2026-03-01 12:00"


class RangeRefused(ValueError):
    """A custom range that cannot be shown; the message says why, for the page."""


def parse_moment(text: str, what: str) -> datetime:
    """``2026-03-01 12:00``, ``2026-03-01T12:00:30Z``, ``2026-03-01``: UTC unless an
    offset is given (then converted)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        shown = text.strip()[:40]
        raise RangeRefused(
            f"{what} {shown!r} is not a date and time: write it like {EXAMPLE} (UTC)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def moment_text(moment: datetime) -> str:
    """How a custom range's ends are written back: ``2026-03-01 12:00`` (seconds only
    when there are some)."""
    pattern = "%Y-%m-%d %H:%M:%S" if moment.second or moment.microsecond else "%Y-%m-%d %H:%M"
    return moment.astimezone(UTC).strftime(pattern)


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

    @classmethod
    def custom(cls, start_text: str, end_text: str, now: datetime | None = None) -> TimeWindow:
        """From ``start_text`` to ``end_text`` (UTC); raises :class:`RangeRefused`."""
        start = parse_moment(start_text, "From")
        end = parse_moment(end_text, "To")
        now = now or datetime.now(UTC)
        if start >= end:
            raise RangeRefused(
                f"From ({moment_text(start)}) must be before To ({moment_text(end)})"
            )
        if end > now + timedelta(minutes=1):
            raise RangeRefused(
                f"To ({moment_text(end)}) is in the future: now is {moment_text(now)} UTC"
            )
        if end - start > MAX_CUSTOM:
            raise RangeRefused(
                f"The range spans {(end - start).days} days: at most {MAX_CUSTOM.days} days"
            )
        return cls(CUSTOM, start, end)

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
