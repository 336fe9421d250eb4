"""A gateway process with a routes file in front of several fake-provider processes,
called through the official openai SDK: weights, a deployment killed mid-traffic and
brought back, fallbacks, a stream broken after its first byte, a bad file refused."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import redis

from tests.routing.conftest import Stack
from tests.routing.fakes import clear, models_received, received, start_fake
from tests.support.events import wait_for_events
from tests.support.processes import free_port, start_gateway
from watchllm_shared.contracts.limits import deployment_keys

pytestmark = pytest.mark.e2e


def sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway.url}/v1", api_key=key, max_retries=0,
                         timeout=20)  # fmt: skip


def ask(client: openai.OpenAI, model: str, text: str = "hi") -> str:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    assert answer.choices[0].message.content
    return answer.model


def test_traffic_splits_by_weight(stack: Stack, project_key: tuple[str, str]) -> None:
    """1,000 requests over weights 1 and 3: one standard deviation of a share is 1.4
    points, so the 5-point bound is 3.6 of them."""
    a, b = stack.fakes["a"], stack.fakes["b"]
    clear(a, b)
    with sdk(stack, project_key[1]) as client:
        run_threads(8, 125, lambda: ask(client, "weighted"))
    counts = Counter({"a": models_received(a).count("weighted"),
                      "b": models_received(b).count("weighted")})  # fmt: skip
    assert counts.total() == 1000
    assert abs(counts["a"] / 1000 - 0.25) <= 0.05, counts


def run_threads(threads: int, each: int, call: object) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        for _ in range(each):
            try:
                call()  # type: ignore[operator]
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors[:3]


def test_a_killed_deployment_costs_no_caller_an_error_and_comes_back(
    stack: Stack, project_key: tuple[str, str], log_dir: Path
) -> None:
    killable, other = stack.fakes["k"], stack.fakes["b"]
    clear(killable, other)
    stop = threading.Event()
    answered: list[str] = []
    errors: list[BaseException] = []

    def traffic() -> None:
        with sdk(stack, project_key[1]) as client:
            while not stop.is_set():
                try:
                    answered.append(ask(client, "steady"))
                except BaseException as exc:  # noqa: BLE001 - asserted below
                    errors.append(exc)

    workers = [threading.Thread(target=traffic) for _ in range(6)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(models_received(killable)) >= 30, "traffic on k")
        killable.kill()  # SIGKILL, requests in flight on it
        killed_at = len(answered)
        wait_until(lambda: len(answered) >= killed_at + 300, "traffic after the kill")
        assert not errors, errors[:3]
        stack.fakes["k"] = start_fake(log_dir, "--delay", "0.02", port=stack.killable_port)
        # Its cooldown is at most 1 s here: probed, then back in the rotation.
        wait_until(lambda: len(models_received(stack.fakes["k"])) >= 20, "k back", 15)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not errors, errors[:3]
    metrics = httpx.get(stack.gateway.metrics_url or "", timeout=10).text
    assert 'watchllm_upstream_cooldowns_total{deployment="steady-k",reason="connect"}' in metrics


def wait_until(condition: object, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_fallbacks_in_order_with_the_model_rewritten_and_recorded(
    stack: Stack, project_key: tuple[str, str], redis_url: str
) -> None:
    a, failing = stack.fakes["a"], stack.fakes["failing"]
    clear(a, failing)
    with sdk(stack, project_key[1]) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="primary", messages=[{"role": "user", "content": "fall back"}]
        )
        assert raw.status_code == 200 and raw.parse().model == "fb-ok"
        # Three attempts at most: the third fallback model is never reached.
        with pytest.raises(openai.InternalServerError) as failed:
            ask(client, "primary-long", "too far")
    assert models_received(failing) == ["fb-fail", "fb-fail-2", "fb-fail-3"]
    assert models_received(a) == ["fb-ok"]
    request_id = raw.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, stack.stream, lambda e: e.request_id == request_id)
    assert (event.model, event.fallback_model, event.deployment) == ("primary", "fb-ok", "fb-ok[0]")
    assert event.upstream_attempts == 3 and event.http_status == 200
    failed_id = failed.value.response.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, stack.stream, lambda e: e.request_id == failed_id)
    assert event.upstream_attempts == 3 and event.http_status == 502


def test_full_deployments_are_skipped_then_a_429_in_the_callers_shape(
    stack: Stack, project_key: tuple[str, str], redis_url: str
) -> None:
    """rpm 1 on each of two deployments: two answers a minute, then 429s (OpenAI's and
    Anthropic's); tpm 1: the first answer's tokens, charged by the gateway, fill it."""
    a, b = stack.fakes["a"], stack.fakes["b"]
    clear(a, b)
    with sdk(stack, project_key[1]) as client:
        assert [ask(client, "capped"), ask(client, "capped")] == ["capped", "capped"]
        with pytest.raises(openai.RateLimitError) as refused:
            ask(client, "capped")
        assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
        assert refused.value.code == "deployment_capacity_exceeded"
        with anthropic.Anthropic(base_url=stack.gateway.url, api_key=project_key[1],
                                 max_retries=0, timeout=20) as claude:  # fmt: skip
            with pytest.raises(anthropic.RateLimitError) as shaped:
                claude.messages.create(model="capped", max_tokens=16,
                                       messages=[{"role": "user", "content": "hi"}])  # fmt: skip
        assert shaped.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert (len(received(a)), len(received(b))) == (1, 1)
        ask(client, "token-capped")
        total = deployment_keys("token-capped-a")[2]
        with redis.Redis.from_url(redis_url) as r:
            wait_until(lambda: r.get(total) is not None, "the answer's tokens charged")
            assert int(r.get(total) or 0) >= 1
        with pytest.raises(openai.RateLimitError):
            ask(client, "token-capped")
    assert len(received(a)) == 2


def test_a_stream_broken_after_its_first_byte_is_not_retried(
    stack: Stack, project_key: tuple[str, str]
) -> None:
    a, b = stack.fakes["a"], stack.fakes["b"]
    clear(a, b)
    text = "[[fake:stream_fail_after=2]] break me"
    with sdk(stack, project_key[1]) as client:
        stream = client.chat.completions.create(
            model="weighted", stream=True, messages=[{"role": "user", "content": text}]
        )
        chunks = []
        with pytest.raises(openai.APIError, match="ended the stream"):
            for chunk in stream:
                chunks.append(chunk)
    assert chunks  # the caller had its first bytes
    assert len(received(a)) + len(received(b)) == 1  # and nothing was sent again


def test_a_bad_routes_file_keeps_the_gateway_from_starting(
    tmp_path: Path, redis_url: str, database_url: str, log_dir: Path
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("models:\n  - name: m\n    deployments:\n      - {provider: openai,"
                    " base_url: 'http://x/v1', weight: -1}\n")  # fmt: skip
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url,
           "WATCHLLM_ROUTES_FILE": str(path), "WATCHLLM_CACHE_ENABLED": "false"}  # fmt: skip
    with pytest.raises(RuntimeError) as refused:
        start_gateway(env, log_dir)
    assert "exited with 3" in str(refused.value)
    assert "models[0] 'm': deployments[0].weight: Input should be greater than 0" in str(
        refused.value
    )


def test_sighup_reloads_the_routes_file_and_keeps_requests_in_flight(
    stack: Stack, project_key: tuple[str, str], redis_url: str, database_url: str,
    log_dir: Path, tmp_path: Path,
) -> None:  # fmt: skip
    a, b = stack.fakes["a"], stack.fakes["b"]
    path = tmp_path / "routes.yaml"
    entry = "models:\n  - name: m\n    deployments: [{{provider: openai, base_url: '{}/v1'}}]\n"
    gone = f"  - name: gone\n    deployments: [{{provider: openai, base_url: 'http://127.0.0.1:{free_port()}/v1'}}]\n"
    path.write_text(entry.format(a.url) + gone)
    gateway = start_gateway({
        "REDIS_URL": redis_url, "DATABASE_URL": database_url, "WATCHLLM_ROUTES_FILE": str(path),
        "WATCHLLM_CACHE_ENABLED": "false", "WATCHLLM_DEFAULT_ALLOWED_MODELS": '["*"]',
    }, log_dir)  # fmt: skip
    try:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=project_key[1],
                               max_retries=0, timeout=20)  # fmt: skip
        with pytest.raises(openai.InternalServerError):  # refused 3 times: cooled 1, 2, 4 s
            ask(client, "gone")
        cooling = httpx.get(f"{gateway.url}/health", timeout=10).json()["deployments_cooling_down"]
        assert list(cooling) == ["gone[0]"] and 0 < cooling["gone[0]"] <= 4
        clear(a, b)
        slow: list[str] = []  # answered by a, though the routes change while it waits
        waiting = threading.Thread(target=lambda: slow.append(ask(client, "m", "[[fake:delay=1]]")))
        waiting.start()
        wait_until(lambda: len(received(a)) == 1, "the slow request at a")
        path.write_text(entry.format(b.url))
        gateway.process.send_signal(signal.SIGHUP)
        wait_until(lambda: ask(client, "m") and len(received(b)) > 0, "requests at b")
        waiting.join()
        assert slow == ["m"] and len(received(a)) == 1
        path.write_text("models: []\n")  # a bad file: logged, and the routes stay
        gateway.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "routes not reloaded" in gateway.log(), "the refusal logged")
        before = len(received(b))
        ask(client, "m")
        assert (
            len(received(b)) == before + 1 and "models: needs at least one entry" in gateway.log()
        )
        client.close()
    finally:
        gateway.stop()
