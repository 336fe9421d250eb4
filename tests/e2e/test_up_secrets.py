"""`watchllm up` and the secrets the services require (issue 22): it generates them once,
keeps them private under its data folder, hands each only to the services that use it,
and a restart on the same folder reuses them, so the exact cache still hits (its keys are
HMACs with the same secret) and the analytics token still opens the query API.
"""

from __future__ import annotations

import json
import stat
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.embedded_stack import EmbeddedStack, Project, embedded_stack, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

SECRETS = ("analytics-query-token", "cache-key-secret")
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


def _analytics_status(stack: EmbeddedStack, project: Project, token: str | None) -> int:
    params = {"project_id": project.project_id, "start": "2020-01-01T00:00:00Z",
              "end": "2020-01-02T00:00:00Z"}  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{stack.analytics_url}/v1/queries/project_totals"
    return httpx.post(url, json=params, headers=headers, timeout=30).status_code


def test_up_generates_the_secrets_once_and_a_restart_keeps_cache_hits(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    assert not VARIABLES & set(env)
    question = f"what did I ask? {uuid.uuid4()}"
    with embedded_stack(tmp_path, env) as stack:
        kept = _kept(stack.data_dir)
        assert kept["analytics-query-token"] != kept["cache-key-secret"]
        # Each secret reaches only the services that use it.
        for module, has in (("watchllm_gateway", "WATCHLLM_CACHE_KEY_SECRET"),
                            ("watchllm_analytics", "WATCHLLM_ANALYTICS_QUERY_TOKEN")):  # fmt: skip
            (pid,) = stack.service_pids(module)
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            names = {item.split(b"=", 1)[0].decode() for item in environ}
            assert names & VARIABLES == {has}, module
        project = stack.create_project("secrets")
        first = _ask(stack, project, question)
        assert first.headers["x-watchllm-cache"] == "miss"
        cache_key = first.headers["x-watchllm-cache-key"]
        _wait_stored(stack, cache_key)
        assert _ask(stack, project, question).headers["x-watchllm-cache"] == "hit"
        assert _analytics_status(stack, project, kept["analytics-query-token"]) == 200
    with embedded_stack(tmp_path, env) as again:  # the same folder and ports
        assert _kept(again.data_dir) == kept  # reused, not generated anew
        repeat = _ask(again, project, question)
        assert repeat.headers["x-watchllm-cache"] == "hit"  # the same key secret
        assert repeat.headers["x-watchllm-cache-key"] == cache_key
        assert repeat.json()["choices"] == first.json()["choices"]
        assert _analytics_status(again, project, None) == 401
        assert _analytics_status(again, project, kept["analytics-query-token"]) == 200
