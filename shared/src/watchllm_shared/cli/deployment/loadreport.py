"""What a load test measured, as one JSON object or as lines for a terminal.

- ``sent``: requests whose send began; ``ok``: answered 200 completely; ``errors``:
  every other scheduled request, by kind (``http_429``, ``timeout``, ``stream_cut``,
  ``connect_error``, ``not_sent``…).
- Latencies of the ``ok`` requests, from their *scheduled* send time to the last byte
  (open loop: a stall shows as latency). ``send_lag_p99_ms`` is the tool's own delay in
  sending; when it is large, the machine running the tool was the bottleneck.
- ``achieved_rps``: ``ok`` per second of the run: over its duration, or from the first
  scheduled send to the last answer when that took longer.
- ``recorded``: answered requests found in analytics (``analytics.Recorded``); None
  without an analytics URL or a project to read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from watchllm_shared.cli.deployment.analytics import Recorded
from watchllm_shared.cli.deployment.loadtest import LoadRun
from watchllm_shared.cli.deployment.stats import distribution


@dataclass(frozen=True)
class LoadReport:
    url: str
    target_rps: float
    duration_s: float
    scheduled: int
    sent: int
    ok: int
    errors: int
    errors_by_status: dict[str, int]
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    send_lag_p99_ms: float | None
    achieved_rps: float
    streams: int
    cache_hits: int
    project_id: str | None
    recorded: int | None
    recorded_method: str | None  # "request_id" or "count"; None when not read
    passed: bool  # no errors, and every answered request recorded (when read)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(run: LoadRun, recorded: Recorded | None) -> LoadReport:
    outcomes = run.outcomes
    kinds = [o.kind for o in outcomes]
    ok = [o.record for o, kind in zip(outcomes, kinds, strict=True) if kind == "ok"]
    latency = distribution(r.done - r.scheduled for r in ok if r.done is not None)
    lag = distribution(o.record.sent - o.record.scheduled for o in outcomes
                       if o.record.sent is not None)  # fmt: skip
    last = max((r.done for r in ok if r.done is not None), default=run.t0)
    errors = Counter(kind for kind in kinds if kind != "ok")
    project = run.preflight.project_id
    return LoadReport(
        url=run.options.url,
        target_rps=run.options.rate,
        duration_s=run.options.duration,
        scheduled=len(outcomes),
        sent=sum(1 for o in outcomes if o.record.sent is not None),
        ok=len(ok),
        errors=len(outcomes) - len(ok),
        errors_by_status=dict(errors.most_common()),
        p50_ms=latency["p50"] if latency else None,
        p90_ms=latency["p90"] if latency else None,
        p99_ms=latency["p99"] if latency else None,
        max_ms=latency["max"] if latency else None,
        send_lag_p99_ms=lag["p99"] if lag else None,
        achieved_rps=len(ok) / max(run.options.duration, last - run.t0),
        streams=sum(1 for o in outcomes if o.stream),
        cache_hits=sum(1 for o in outcomes if o.ok and o.cache == "hit"),
        project_id=str(project) if project else None,
        recorded=recorded.count if recorded else None,
        recorded_method=recorded.method if recorded else None,
        passed=len(ok) == len(outcomes) and (recorded is None or recorded.count == len(ok)),
    )


def lines(report: LoadReport) -> list[str]:
    """The report for a terminal, one fact per line."""
    out = [
        f"target     {report.scheduled} requests at {report.target_rps:g}/s for"
        f" {report.duration_s:g} s against {report.url}",
        f"sent       {report.sent} ({report.streams} streams); achieved"
        f" {report.achieved_rps:.1f} answers/s",
        f"answered   {report.ok} ok, {report.errors} errors",
    ]
    if report.errors_by_status:
        kinds = ", ".join(f"{k}: {n}" for k, n in report.errors_by_status.items())
        out.append(f"errors     {kinds}")
    if report.p50_ms is not None:
        out.append(
            f"latency    p50 {report.p50_ms:.1f} ms, p90 {report.p90_ms:.1f} ms,"
            f" p99 {report.p99_ms:.1f} ms, max {report.max_ms:.1f} ms"
            f" (from the scheduled send; the tool's send lag p99 {report.send_lag_p99_ms:.1f} ms)"
        )
    out.append(f"cache      {report.cache_hits} hits")
    out.append(f"recorded   {_recorded(report)}")
    return out


def _recorded(report: LoadReport) -> str:
    if report.recorded is None:
        return "not read (pass --analytics-url, and --project-id when the project's cache is off)"
    if report.recorded_method == "count":
        return (f"{report.recorded} requests of the project in the run's window (too many to"
                f" match by id; other traffic counts too), {report.ok} answered")  # fmt: skip
    return f"{report.recorded} of {report.ok} answered requests found in analytics by request id"
