"""What `watchllm up` does with the secrets the services require (issue 22), checked on
the stack of ``test_up_supervision`` (which restarts it once): it generates them once,
keeps them private under its data folder, hands each only to the services that use it,
and a restart on the same folder reuses them, so the exact cache still hits (its keys are
HMACs with the same secret) and the analytics token still opens the query API. The
embedded stores' passwords are kept the same way (finding 4): every URL `up` hands out
carries them, a client without them is refused, and the restart opens the same stores.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis

from tests.support.embedded_stack import EmbeddedStack, Project

SECRETS = ("analytics-query-token", "cache-key-secret", "valkey-password", "postgres-password")
VARIABLES = {"WATCHLLM_ANALYTICS_QUERY_TOKEN", "WATCHLLM_CACHE_KEY_SECRET"}


def _ask(stack: EmbeddedStack, project: Project, question: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
    answer = httpx.post(f"{stack.gateway_url}/v1/chat/completions", json=body, timeout=30,
                        headers={"Authorization": f"Bearer {project.key}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer


def _wait_stored(stack: EmbeddedStack, cache_key: str) -> None:
    """Until the cache service wrote the entry (it stores after the answer was sent); the
    deadline only bounds a failure."""
    runtime = json.loads((stack.data_dir / "runtime.json").read_text())
    client = redis.Redis.from_url(runtime["redis_url"])
    deadline = time.monotonic() + 120
    try:
        while not client.exists(cache_key):
            assert time.monotonic() < deadline, f"{cache_key} never stored"
            time.sleep(0.05)
    finally:
        client.close()


def _kept(data_dir: Path) -> dict[str, str]:
    folder = data_dir / "secrets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    kept = {}
    for name in SECRETS:
        path = folder / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        kept[name] = path.read_text().strip()
        assert len(kept[name]) >= 32, name
    return kept


def _runtime(data_dir: Path, kept: dict[str, str]) -> dict[str, str]:
    """The URLs `up` wrote for the CLI: private, with the kept passwords in them. (`up`
    writes the file once the gateway is ready: the stack may be healthy just before.)"""
    path = data_dir / "runtime.json"
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, "runtime.json never written"
        time.sleep(0.05)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    runtime: dict[str, str] = json.loads(path.read_text())
    assert urlsplit(runtime["redis_url"]).password == kept["valkey-password"]
    assert urlsplit(runtime["database_url"]).password == kept["postgres-password"]
    return runtime


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{parts.hostname}:{parts.port}"))


async def _postgres_answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=10)
    except asyncpg.InvalidPasswordError:
        return False
    await connection.close()
    return True


def _stores_refuse_strangers(runtime: dict[str, str], cache_key: str) -> None:
    """A local user who knows the ports, not the passwords: neither store lets them in."""
    stranger = redis.Redis.from_url(_without_password(runtime["redis_url"]))
    try:
        with pytest.raises(redis.AuthenticationError):
            stranger.set(cache_key, "poisoned")
    finally:
        stranger.close()
    assert asyncio.run(_postgres_answers(runtime["database_url"]))
    assert not asyncio.run(_postgres_answers(_without_password(runtime["database_url"])))


def _analytics_status(stack: EmbeddedStack, project: Project, token: str | None) -> int:
    params = {"project_id": project.project_id, "start": "2020-01-01T00:00:00Z",
              "end": "2020-01-02T00:00:00Z"}  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{stack.analytics_url}/v1/queries/project_totals"
    return httpx.post(url, json=params, headers=headers, timeout=30).status_code


@dataclass
class Asked:
    """A question asked once through the first start, and its exact-cache entry."""

    kept: dict[str, str]  # the secrets as first generated
    project: Project
    question: str
    cache_key: str
    choices: list[Any]


def ask_and_cache(stack: EmbeddedStack) -> Asked:
    kept = _kept(stack.data_dir)
    project = stack.create_project("secrets")
    question = f"what did I ask? {uuid.uuid4()}"
    first = _ask(stack, project, question)
    assert first.headers["x-watchllm-cache"] == "miss"
    cache_key = first.headers["x-watchllm-cache-key"]
    _wait_stored(stack, cache_key)
    return Asked(kept, project, question, cache_key, first.json()["choices"])


def check_first_start(stack: EmbeddedStack, asked: Asked) -> None:
    kept = asked.kept
    assert kept["analytics-query-token"] != kept["cache-key-secret"]
    # Each secret reaches only the services that use it.
    for module, has in (("watchllm_gateway", "WATCHLLM_CACHE_KEY_SECRET"),
                        ("watchllm_analytics", "WATCHLLM_ANALYTICS_QUERY_TOKEN")):  # fmt: skip
        (pid,) = stack.service_pids(module)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {item.split(b"=", 1)[0].decode() for item in environ}
        assert names & VARIABLES == {has}, module
    assert _ask(stack, asked.project, asked.question).headers["x-watchllm-cache"] == "hit"
    assert _analytics_status(stack, asked.project, kept["analytics-query-token"]) == 200
    _stores_refuse_strangers(_runtime(stack.data_dir, kept), asked.cache_key)
    # What the services wrote (analytics' chdb, logs) is private too: umask 077.
    for made in ("logs/gateway.log", "clickhouse", "qdrant-edge"):
        assert stat.S_IMODE((stack.data_dir / made).stat().st_mode) & 0o077 == 0, made
    printed = stack.log()
    assert kept["valkey-password"] not in printed and "redis://:***@" in printed
    assert kept["postgres-password"] not in printed


def check_after_restart(again: EmbeddedStack, asked: Asked) -> None:
    """``up`` started again on the same folder and ports."""
    kept = asked.kept
    assert _kept(again.data_dir) == kept  # reused, not generated anew
    _stores_refuse_strangers(_runtime(again.data_dir, kept), asked.cache_key)
    repeat = _ask(again, asked.project, asked.question)
    assert repeat.headers["x-watchllm-cache"] == "hit"  # the same key secret
    assert repeat.headers["x-watchllm-cache-key"] == asked.cache_key
    assert repeat.json()["choices"] == asked.choices
    assert _analytics_status(again, asked.project, None) == 401
    assert _analytics_status(again, asked.project, kept["analytics-query-token"]) == 200
