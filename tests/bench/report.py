"""The bench's verdicts and its markdown report, from the results dictionary."""

from __future__ import annotations

from typing import Any

REFERENCE_RATE = 200
_ROWS = ("p50", "p90", "p99", "max")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pair(results: dict[str, Any], mode: str, rate: int) -> dict[str, Any] | None:
    for pair in results["latency"]:
        if pair["mode"] == mode and pair["rate"] == rate:
            return pair  # type: ignore[no-any-return]
    return None


def _verdict(name: str, value: float | None, limit: float, unit: str, most: bool,
             note: str = "") -> dict[str, Any]:  # fmt: skip
    if value is None:
        return {"target": name, "limit": limit, "measured": None, "verdict": "NOT MEASURED"}
    ok = value <= limit if most else value >= limit
    text = f"{value:.2f} {unit}" + (f" ({note})" if note else "")
    return {"target": name, "limit": limit, "measured": round(value, 3), "text": text,
            "verdict": "PASS" if ok else "MISS"}  # fmt: skip


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    chat, stream = _pair(results, "chat", REFERENCE_RATE), _pair(results, "stream", REFERENCE_RATE)

    def at(pair: dict[str, Any] | None, key: str, q: str) -> float | None:
        return pair[key].get(q) if pair and pair[key] else None

    def errors(pair: dict[str, Any] | None) -> str:
        return f"{pair['gateway']['errors']} gateway errors" if pair else ""

    sat = results.get("saturation", {}).get("gateway")
    rps = sat["throughput_rps"] if sat else None
    sat_note = f"{sat['errors']} errors, closed loop C={results['options']['concurrency']}"
    peak = results["memory"].get("peak_mb")
    r = REFERENCE_RATE
    return [
        _verdict(f"added latency p50 ≤ 1 ms at {r} req/s (non-stream)",
                 at(chat, "added_latency_ms", "p50"), 1.0, "ms", True, errors(chat)),
        _verdict(f"added latency p99 ≤ 5 ms at {r} req/s (non-stream)",
                 at(chat, "added_latency_ms", "p99"), 5.0, "ms", True, errors(chat)),
        _verdict(f"added TTFB p50 ≤ 1 ms on streams at {r} req/s",
                 at(stream, "added_ttfb_ms", "p50"), 1.0, "ms", True, errors(stream)),
        _verdict("≥ 1,000 req/s from one gateway worker (non-stream)",
                 rps, 1000.0, "req/s", False, sat_note if sat else ""),
        _verdict("≤ 150 MB RSS per worker (peak VmHWM)", peak, 150.0, "MB", True),
    ]  # fmt: skip


def _rate_table(results: dict[str, Any], rate: int) -> list[str]:
    cols: list[tuple[str, dict[str, float] | None]] = []
    for mode, label in (("chat", "non-stream"), ("stream", "stream")):
        pair = _pair(results, mode, rate)
        if pair is None:
            continue
        cols += [(f"{label} gateway", pair["gateway"]["latency_ms"]),
                 (f"{label} direct", pair["direct"]["latency_ms"]),
                 (f"{label} **added**", pair["added_latency_ms"])]  # fmt: skip
        if mode == "stream":
            cols += [("TTFB gateway", pair["gateway"]["ttfb_ms"]),
                     ("TTFB direct", pair["direct"]["ttfb_ms"]),
                     ("TTFB **added**", pair["added_ttfb_ms"])]  # fmt: skip
    lines = ["| ms | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row in _ROWS:
        cells = [_fmt(d.get(row) if d else None) for _, d in cols]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines.append("")
    for mode in ("chat", "stream"):
        pair = _pair(results, mode, rate)
        if pair is None:
            continue
        g, d = pair["gateway"], pair["direct"]
        overload = " **gateway overloaded**:" if pair.get("gateway_overloaded") else ""
        lines.append(
            f"- {mode}:{overload} gateway {g['ok']}/{g['requests']} ok"
            f" ({g['throughput_rps']:.0f} req/s answered), errors {g['error_kinds'] or 0};"
            f" direct {d['ok']}/{d['requests']} ok, errors {d['error_kinds'] or 0};"
            f" added service time p50/p99 {_fmt(pair['added_service_ms'].get('p50'))}/"
            f"{_fmt(pair['added_service_ms'].get('p99'))} ms; gateway CPU"
            f" {_fmt(pair['gateway_cpu_ms_per_request'], 3)} ms/request; late sends"
            f" {g['late_sends']}+{d['late_sends']}, queued at cap"
            f" {g['queued_at_cap']}+{d['queued_at_cap']}, connections"
            f" {g['connections']}+{d['connections']}"
        )
        spread = pair.get("added_p50_per_round_ms") or {}
        key = "ttfb" if mode == "stream" else "latency"
        if len(spread.get(key, [])) > 1:
            values = sorted(spread[key])
            what = "TTFB" if mode == "stream" else "latency"
            lines.append(
                f"  - added {what} p50 of each gateway slice against the direct slice after"
                f" it ({len(values)} pairs): {values[0]:.2f}–{values[-1]:.2f} ms"
                f" (median pair {values[len(values) // 2]:.2f})"
            )
    return lines


def _profile(profile: dict[str, Any]) -> list[str]:
    if not profile.get("ok"):
        return [f"Not profiled: {profile.get('message', 'skipped')}."]
    summary = profile["summary"]
    if not summary.get("samples"):
        return ["py-spy ran but recorded no busy samples."]
    lines = [
        f"py-spy at {summary['rate_hz']} Hz for {profile['seconds']} s on the gateway pid"
        f" during an open-loop load of {profile['rate']} req/s ({profile['mode']});"
        f" {summary['samples']} samples with the GIL held (the gateway ran Python in"
        f" ~{summary['busy_share']}% of sample ticks; py-spy: {profile['message']})."
        " Shares are of those samples; C code run with the GIL counts for its caller.",
        "",
        "| package (own time) | share % |",
        "|---|---|",
    ]
    lines += [f"| {p['package']} | {p['own']} |" for p in summary["packages_own"]]
    lines += ["", "| frame (by own+children) | total % | own % |", "|---|---|---|"]
    lines += [f"| `{f['frame']}` | {f['total']} | {f['own']} |" for f in summary["top_total"]]
    lines += ["", "| frame (by own time) | own % | total % |", "|---|---|---|"]
    lines += [f"| `{f['frame']}` | {f['own']} | {f['total']} |" for f in summary["top_own"]]
    return lines


def _saturation(results: dict[str, Any]) -> list[str]:
    sat = results.get("saturation")
    if not sat:
        return ["Not run."]
    lines = ["| target | req/s | p50 ms | p99 ms | max ms | errors | CPU ms/req | CPU busy |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in ("gateway", "direct"):
        s = sat[name]
        lat = s["latency_ms"] or {}
        cpu = sat.get("gateway_cpu_ms_per_request") if name == "gateway" else None
        busy = sat.get("gateway_cpu_busy") if name == "gateway" else None
        lines.append(
            f"| {name} | {s['throughput_rps']:.0f} | {_fmt(lat.get('p50'))} |"
            f" {_fmt(lat.get('p99'))} | {_fmt(lat.get('max'))} | {s['errors']} |"
            f" {_fmt(cpu, 3)} | {'–' if busy is None else f'{busy:.0%}'} |"
        )
    return lines


# The fake provider alone, closed loop, on a quiet machine of this kind (2 vCPUs):
# 17,700-20,500 requests/s in the reports of 2026-11-26/27 mornings.
QUIET_DIRECT_RPS = 17_700


def _machine_speed(results: dict[str, Any]) -> str:
    """How fast the machine ran during this run, read off the fake provider's own
    saturation: the shared machine's speed swings by 2-3x, and every latency with it."""
    sat = results.get("saturation")
    if not sat:
        return "Machine speed: not measured (no saturation run)."
    direct = sat["direct"]["throughput_rps"]
    share = direct / QUIET_DIRECT_RPS
    return (
        f"Machine speed: the fake provider alone saturated at {direct:,.0f} req/s, against"
        f" ≥ {QUIET_DIRECT_RPS:,} on a quiet machine of this kind ({share:.0%})."
        " Latencies grow as that falls; compare runs only side by side (the A/B reports)."
    )


def markdown(results: dict[str, Any]) -> str:
    m, o, mem = results["machine"], results["options"], results["memory"]
    out = [
        f"# Gateway overhead bench — {m['date']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['platform']}, Python {m['python']}."
        " One gateway process (one uvicorn worker, uvloop + httptools), the fake provider"
        " (one worker), Redis, Postgres and the load tool all share these cores.",
        "",
        "## Verdicts",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    out += [f"| {v['target']} | {v.get('text', '–')} | **{v['verdict']}** |"
            for v in results["verdicts"]]  # fmt: skip
    out += ["", _machine_speed(results), "", "## Method", "", results["method"], ""]
    for rate in o["rates"]:
        out += [f"## {rate} req/s (open loop)", ""] + _rate_table(results, rate) + [""]
    out += [f"## Saturation (closed loop, {o['concurrency']} connections, "
            f"{o['saturation_seconds']} s each, non-stream)", ""]  # fmt: skip
    out += _saturation(results) + [""]
    out += ["## Memory (gateway worker)", "",
            f"VmRSS before load {_fmt(mem.get('before_mb'), 1)} MB, after load"
            f" {_fmt(mem.get('after_mb'), 1)} MB, peak (VmHWM) {_fmt(mem.get('peak_mb'), 1)} MB.",
            "", "## Where the gateway's time goes", ""]  # fmt: skip
    out += _profile(results.get("profile", {})) + [""]
    return "\n".join(out)
