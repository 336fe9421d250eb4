"""Where a process spends its time: ``py-spy record`` on it, summarised.

py-spy samples the Python stacks of a running process from outside (it needs ptrace;
root works). Only the thread holding the GIL is sampled (``--gil``): threads waiting
(the event loop in its poll, thread-pool workers on their queue) hold no GIL, so the
shares below are shares of the time the gateway was running Python (time in C
extensions called with the GIL held, uvloop's included, counts for the calling
frame).
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
            "--rate", str(RATE_HZ), "--format", "raw", "--nolineno", "--gil",
            "--output", str(output)]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), seconds + 30)
    except TimeoutError:
        return False, f"py-spy did not finish within {seconds + 30:.0f} s"
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    text = out.decode(errors="replace").strip()
    if process.returncode != 0:
        return False, f"py-spy exited with {process.returncode}: {text[-500:]}"
    said = [line[line.index("Samples:") :] for line in text.splitlines() if "Samples:" in line]
    return True, said[-1] if said else text[-200:]


def _package(frame: str) -> str:
    """``handle (watchllm_gateway/proxy.py)`` → ``watchllm_gateway``."""
    start = frame.rfind("(")
    path = frame[start + 1 : -1] if start >= 0 else frame
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") or "?"


def _count(raw: str) -> tuple[int, Counter[str], Counter[str], dict[str, Counter[str]]]:
    """Samples, own+children and own counts per frame, and each frame's child counts."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    children: dict[str, Counter[str]] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples, frames = int(count), stack.split(";")
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
        for parent, child in zip(frames, [*frames[1:], "<own>"], strict=True):
            children.setdefault(parent, Counter())[child] += samples
    return total, inclusive, own, children


def summarise(raw: str, seconds: float, top: int = 15) -> dict[str, Any]:
    """Shares of busy samples: per frame (own and own+children) and per package (own).

    The own+children table leaves out the event loop's scaffolding (frames on nearly
    every stack) and pass-through frames (all their time goes to one child, like the
    ASGI middleware chain), so what remains is where time branches.
    """
    total, inclusive, own, children = _count(raw)
    if total == 0:
        return {"samples": 0}
    packages: Counter[str] = Counter()
    for frame, n in own.items():
        packages[_package(frame)] += n

    def share(n: int) -> float:
        return round(100.0 * n / total, 1)

    def informative(frame: str) -> bool:
        if inclusive[frame] >= 0.97 * total:
            return False
        return children[frame].most_common(1)[0][1] < 0.95 * sum(children[frame].values())

    by_total = [f for f, _ in inclusive.most_common() if informative(f)][:top]
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
