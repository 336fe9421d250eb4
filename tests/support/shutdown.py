"""Stopping a service process the way a supervisor does (SIGTERM), and what its consumer
group says afterwards."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import redis

from tests.support.processes import ServiceProcess

# Generous: a healthy stop takes ~1-2 s here (a 1 s XREADGROUP block, then one round);
# `watchllm up` and Docker give 10 s before SIGKILL.
STOP_BOUND_SECONDS = 8.0


@dataclass(frozen=True)
class Stopped:
    returncode: int | None  # None: still running at the bound (then killed)
    seconds: float


def sigterm(service: ServiceProcess, bound: float = STOP_BOUND_SECONDS) -> Stopped:
    """SIGTERM ``service`` and wait up to ``bound`` seconds; SIGKILL it past that."""
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    try:
        code: int | None = service.process.wait(bound)
    except subprocess.TimeoutExpired:
        code = None
        service.kill()
    return Stopped(code, time.monotonic() - started)


def pending_of(client: redis.Redis, stream: str, group: str, consumer: str) -> list[Any]:
    """The entries delivered to ``consumer`` and not acknowledged."""
    return client.xpending_range(stream, group, "-", "+", 10_000, consumername=consumer)  # type: ignore[no-any-return]


def entries_read(client: redis.Redis, stream: str, group: str) -> int:
    """How many of the stream's entries the group was handed (0 before its creation)."""
    for info in client.xinfo_groups(stream) if client.exists(stream) else []:
        if info["name"] in (group, group.encode()):
            return int(info.get("entries-read") or 0)
    return 0


def unread(client: redis.Redis, stream: str, group: str) -> int:
    """How many of the stream's entries the group was not handed yet (for a stream
    nothing is deleted from; a missing group has read nothing)."""
    added = int(client.xinfo_stream(stream)["entries-added"]) if client.exists(stream) else 0
    return added - entries_read(client, stream, group)


def wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)
