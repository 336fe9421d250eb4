"""``python -m watchllm_gateway.routing check FILE``: validate a routes file, as the
gateway does at start. Prints each model entry and its deployments, or every problem
(naming its entry and field) and exits 1."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from watchllm_gateway.routing.schema import RoutesError, parse_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="watchllm routes")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a routes file")
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    try:
        document = parse_text(args.file.read_text(), str(args.file))
    except OSError as exc:
        sys.stderr.write(f"{args.file}: cannot be read: {exc}\n")
        return 1
    except RoutesError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    out = sys.stdout
    for entry in document.models:
        fallbacks = f" -> fallbacks {', '.join(entry.fallbacks)}" if entry.fallbacks else ""
        out.write(f"{entry.name}{fallbacks}\n")
        for index, d in enumerate(entry.deployments):
            upstream = f" as {d.model}" if d.model else ""
            capacity = "".join(f" {n} {v}" for n, v in (("rpm", d.rpm), ("tpm", d.tpm)) if v)
            out.write(f"  {entry.deployment_name(index)}: {d.provider.value} {d.base_url}"
                      f" weight {d.weight:g}{upstream}{capacity}\n")  # fmt: skip
    out.write(f"{args.file}: ok ({len(document.models)} model entries)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
