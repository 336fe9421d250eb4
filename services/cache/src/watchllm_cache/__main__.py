"""``python -m watchllm_cache``: run the cache service; ``... eval PAIRS.jsonl [--json]``:
measure the semantic cache on labelled pairs (see ``eval.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _table(report: dict[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "   -  " if value is None else f"{100 * value:5.1f}%"

    other = report.get("compare")
    extra = f"   {other['verifier']} hits / false" if other else ""
    lines = [f"{'':28} {'pairs':>6} {'hits':>7} {'false hits':>11}   baseline hits / false"
             + extra]  # fmt: skip
    base = report["baseline"]
    sections = [
        ("overall", {"overall": report["overall"]}, {"overall": base["overall"]}, "overall"),
        ("by source", report["by_source"], base["by_source"], "by_source"),
        ("by kind", report["by_kind"], base["by_kind"], "by_kind"),
    ]
    for title, ours, theirs, key_of in sections:
        lines.append(f"-- {title}")
        for key, row in ours.items():
            b = theirs[key]
            line = (f"{key:28} {row['pairs']:6d} {pct(row['hit_rate']):>7} "
                    f"{pct(row['false_hit_rate']):>11}   {pct(b['hit_rate'])} / "
                    f"{pct(b['false_hit_rate'])}")  # fmt: skip
            if other:
                o = other[key_of] if key_of == "overall" else other[key_of][key]
                line += f"      {pct(o['hit_rate'])} / {pct(o['false_hit_rate'])}"
            lines.append(line)
    for step in report.get("steps", []):
        lines.append(f"step +{step['step']:22} hits {pct(step['hit_rate'])}  "
                     f"false hits {pct(step['false_hit_rate'])}")  # fmt: skip
    s = report["settings"]
    lines.append(f"verifier {s['verifier']}, threshold {s['threshold']}; baseline: {s['baseline']} "
                 f"(= {s['baseline_threshold']})")  # fmt: skip
    return "\n".join(lines)


def _eval(args: argparse.Namespace) -> None:
    from watchllm_cache.eval import evaluate
    from watchllm_cache.settings import SemanticSettings

    overrides: dict[str, Any] = (
        {} if args.threshold is None else {"cache_threshold": args.threshold}
    )
    if args.verifier is not None:
        overrides["cache_verifier"] = args.verifier
    settings = SemanticSettings(**overrides)
    report = evaluate(args.pairs, settings, with_steps=args.steps, compare=args.compare)
    out = json.dumps(report) if args.json else _table(report)
    sys.stdout.write(out + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m watchllm_cache")
    commands = parser.add_subparsers(dest="command")
    ev = commands.add_parser("eval", help="hit and false-hit rates on labelled pairs")
    ev.add_argument("pairs", type=Path, help="JSONL: {a, b, same, kind?, source?} per line")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--steps", action="store_true", help="add each rule's cumulative effect")
    ev.add_argument("--threshold", type=float, default=None, help="override the threshold")
    ev.add_argument(
        "--verifier",
        choices=("rules", "learned"),
        default=None,
        help="verification path (default: the setting)",
    )
    ev.add_argument("--compare", action="store_true", help="add the other verifier's numbers")
    args = parser.parse_args(argv)
    if args.command == "eval":
        _eval(args)
        return
    from watchllm_cache.service.serve import serve

    serve()


if __name__ == "__main__":
    main()
