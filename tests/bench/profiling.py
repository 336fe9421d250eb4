"""Where a process spends its time: ``py-spy record`` on it, summarised.

py-spy samples the Python stacks of a running process from outside (it needs ptrace;
root works). Samples of idle threads (waiting in the event loop's poll) are left out,
so the shares below are shares of the time the gateway was actually busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 250


def py_spy_path() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


async def record(pid: int, seconds: float, output: Path) -> tuple[bool, str]:
    """Sample ``pid`` for ``seconds`` into a raw (collapsed stacks) file.

    Returns (ok, message); never raises for a profiler that cannot attach.
    """
    exe = py_spy_path()
    if exe is None:
        return False, "py-spy is not installed"
    args = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", str(RATE_HZ), "--format", "raw", "--nolineno", "--nonblocking",
            "--output", str(output)]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), seconds + 30)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    text = out.decode(errors="replace").strip()
    if process.returncode != 0 or not output.exists():
        return False, f"py-spy exited with {process.returncode}: {text[-500:]}"
    return True, text.splitlines()[-1] if text else ""


def _package(frame: str) -> str:
    """``handle (watchllm_gateway/proxy.py)`` → ``watchllm_gateway``."""
    start = frame.rfind("(")
    path = frame[start + 1 : -1] if start >= 0 else frame
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") or "?"


def summarise(raw: str, seconds: float, top: int = 15) -> dict[str, Any]:
    """Shares of busy samples: per frame (own and own+children) and per package (own)."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
        packages[_package(frames[-1])] += samples
    if total == 0:
        return {"samples": 0}

    def share(n: int) -> float:
        return round(100.0 * n / total, 1)

    # Frames on (nearly) every stack are the event loop's scaffolding: not informative.
    scaffolding = {f for f, n in inclusive.items() if n >= 0.97 * total}
    by_total = [f for f, _ in inclusive.most_common() if f not in scaffolding][:top]
    return {
        "samples": total,
        "rate_hz": RATE_HZ,
        "busy_share": round(100.0 * total / (RATE_HZ * seconds), 1),
        "top_total": [
            {"frame": f, "total": share(inclusive[f]), "own": share(own[f])} for f in by_total
        ],  # fmt: skip
        "top_own": [
            {"frame": f, "own": share(n), "total": share(inclusive[f])}
            for f, n in own.most_common(top)
        ],  # fmt: skip
        "packages_own": [{"package": p, "own": share(n)} for p, n in packages.most_common(12)],
    }
