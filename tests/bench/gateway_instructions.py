"""The gateway's work per request, in CPU instructions: a number the machine's speed
does not move.

The latency bench (``gateway_bench``) swings by 2-3x with how busy the shared machine
is; instruction counts do not. Here the gateway runs under ``valgrind --tool=callgrind``
(everything else natively: Redis, Postgres, the fake provider, this client), requests go
one at a time with a short pause (so, as at 200 req/s, every request wakes the loop and
the event publisher on its own), and callgrind counts the instructions the gateway
process executed over ``--requests`` of them, background work included (event XADDs,
timers). Each kind is warmed up first, uninstrumented and then instrumented, so start-up,
first-call caches and valgrind's own translation are not counted.

What it cannot see: time spent waiting (Redis, the upstream, the kernel's wake-ups),
which is most of the latency on two vCPUs. It answers "did this change make the gateway
do less?", not "how fast is it?".

Run: ``make bench-gateway-instructions`` (about 2 minutes; needs valgrind, from Debian,
and says so when it is missing). Writes
``tests/bench/results/gateway-instructions-latest.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.bench.stack import MODEL, BenchStack, Endpoint, bench_stack

log = logging.getLogger("gateway_instructions")
RESULTS = Path(__file__).parent / "results"
PAUSE_SECONDS = 0.01
WARM_UP = 30


def _body(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write one short sentence about the sea."}],
    }
    if stream:
        body["stream"] = True
    return body


def _send(client: httpx.Client, endpoint: Endpoint, stream: bool, count: int) -> None:
    url = f"http://{endpoint.host}:{endpoint.port}/v1/chat/completions"
    headers = {"authorization": f"Bearer {endpoint.key}"}
    for _ in range(count):
        with client.stream("POST", url, json=_body(stream), headers=headers) as response:
            response.read()
            if response.status_code != 200:
                raise RuntimeError(f"gateway answered {response.status_code}: {response.text}")
        time.sleep(PAUSE_SECONDS)


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _dumped_total(out: Path, before: set[Path]) -> int:
    """The ``totals:`` line (instructions) of the dump file that appeared since ``before``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = [p for p in out.parent.glob(out.name + ".*") if p not in before]
        for path in new:
            for line in path.read_text().splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


def measure(stack: BenchStack, out: Path, requests: int) -> dict[str, Any]:
    pid = stack.gateway_pid
    results: dict[str, Any] = {}
    with httpx.Client(timeout=120) as client:
        for mode, stream in (("chat", False), ("stream", True)):
            _send(client, stack.gateway_endpoint, stream, WARM_UP)
            _control(pid, "--instr=on")
            _send(client, stack.gateway_endpoint, stream, WARM_UP // 3)
            _control(pid, "--zero")
            _send(client, stack.gateway_endpoint, stream, requests)
            before = set(out.parent.glob(out.name + ".*"))
            _control(pid, "--dump")
            total = _dumped_total(out, before)
            _control(pid, "--instr=off")
            results[mode] = {"requests": requests, "instructions": total,
                             "per_request": total / requests}  # fmt: skip
            log.info("%s: %.2f M instructions per request", mode, total / requests / 1e6)
    return results


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Gateway: instructions per request (callgrind)", "",
        f"{report['date']} · {report['machine']} · {report['requests']} requests per kind,"
        f" one at a time, {PAUSE_SECONDS * 1000:.0f} ms apart · commit {report['commit']}", "",
        "Counted in the gateway process only (valgrind), background work included; Redis,"
        " Postgres, the fake provider and the client run natively and are not counted."
        " Repeatable whatever the machine's load: compare commits with it.", "",
        "| kind | instructions per request |", "|---|---:|",
    ]  # fmt: skip
    for mode, data in report["results"].items():
        lines.append(f"| {mode} | {data['per_request'] / 1e6:.2f} M |")
    return "\n".join(lines) + "\n"


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=Path(__file__).parent)  # fmt: skip
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)  # noqa: T201
        return 2
    with tempfile.TemporaryDirectory(prefix="watchllm-instr-") as work:
        out = Path(work) / "callgrind.out"
        wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={out}"]  # fmt: skip
        with bench_stack(Path(work), gateway_wrapper=wrapper, gateway_timeout=300) as stack:
            results = measure(stack, out, args.requests)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": _commit(),
              "machine": f"Python {platform.python_version()}", "requests": args.requests,
              "results": results}  # fmt: skip
    args.results_dir.mkdir(exist_ok=True)
    (args.results_dir / "gateway-instructions-latest.json").write_text(
        json.dumps(report, indent=2) + "\n"
    )
    (args.results_dir / "gateway-instructions-latest.md").write_text(render(report))
    print(render(report))  # noqa: T201 - the report is this tool's output
    return 0


if __name__ == "__main__":
    sys.exit(main())
