"""Fake-provider processes on loopback, one per deployment, and what each received."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.processes import ServiceProcess, free_port, start_process


def start_fake(log_dir: Path, *args: str, port: int | None = None) -> ServiceProcess:
    """``python -m watchllm_shared.fake_provider --port P ARGS`` (what ``watchllm
    fake-provider`` serves), ready when its /health answers."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    return start_process(
        "watchllm_shared.fake_provider", ["--port", str(port), *args], {},
        f"{base}/health", base, log_dir / f"routing-fake-{port}.log",
    )  # fmt: skip


def received(fake: ServiceProcess) -> list[dict]:  # type: ignore[type-arg]
    """The generation requests the fake got since it was last cleared, oldest first."""
    requests = httpx.get(f"{fake.url}/_fake/requests", timeout=10).json()
    return [r for r in requests if r["path"].startswith("/v1/") and r["method"] == "POST"]


def models_received(fake: ServiceProcess) -> list[str]:
    return [r["body"]["model"] for r in received(fake)]


def clear(*fakes: ServiceProcess) -> None:
    for fake in fakes:
        httpx.delete(f"{fake.url}/_fake/requests", timeout=10).raise_for_status()
