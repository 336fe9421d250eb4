"""Which models a key reaches (issue 22, finding 12), against a real gateway process with
the default ``WATCHLLM_DEFAULT_ALLOWED_MODELS`` (``["@priced"]``) in front of the fake
provider, whose routes (``gpt-*``, ``claude-*``) reach any model name.

A project without a list of its own gets models with a price; an unpriced model (a
private fine-tune, here ``*-house-tuned``) is refused with 403 in the caller's API shape,
naming the model and the command that allows it; that command, run as written, lets the
next request through, which is then recorded as unpriced, counted, and logged once.
"""

from __future__ import annotations

import asyncio
import re
import time

import anthropic
import httpx
import openai
import pytest
from click.testing import CliRunner

from tests.e2e.conftest import Gateway
from tests.support.events import wait_for_events
from watchllm_shared.cli.main import cli

pytestmark = pytest.mark.e2e

HOUSE_MODEL = "gpt-house-tuned"  # routed (gpt-*), in no price table
MESSAGES = [{"role": "user", "content": "hi"}]
ALLOW_COMMAND = re.compile(r"watchllm projects models (\S+) --add '([^']+)'")


def _chat(gateway: Gateway, key: str, model: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": model,
                      "messages": MESSAGES}, headers={"authorization": f"Bearer {key}"},
                      timeout=10)  # fmt: skip


def _unpriced_other(gateway: Gateway) -> float:
    assert gateway.process.metrics_url is not None
    text = httpx.get(gateway.process.metrics_url, timeout=10).text
    found = re.search(r'^watchllm_unpriced_requests_total\{model="other"\} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


async def test_a_project_without_a_list_gets_priced_models_and_a_403_for_others(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    project, key = project_key
    assert _chat(gateway, key, "gpt-4o-mini").status_code == 200
    refused = _chat(gateway, key, HOUSE_MODEL)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "model_not_allowed")
    assert f"'{HOUSE_MODEL}'" in error["message"] and f"'{project}'" in error["message"]
    assert ALLOW_COMMAND.search(error["message"]) is not None, error["message"]
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as sdk:
        with pytest.raises(openai.PermissionDeniedError) as denied:
            sdk.chat.completions.create(model=HOUSE_MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        assert denied.value.code == "model_not_allowed"
        # Routing comes first: a model no route serves is still "does not exist".
        with pytest.raises(openai.NotFoundError) as unknown:
            sdk.embeddings.create(model="llama-9000", input="hi")
        assert unknown.value.code == "model_not_found"
    with anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0) as claude:
        with pytest.raises(anthropic.PermissionDeniedError) as forbidden:
            claude.messages.create(model="claude-house-tuned", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
    body = forbidden.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert body["error"]["type"] == "permission_error"
    assert "'claude-house-tuned'" in body["error"]["message"]


async def test_the_command_the_refusal_names_allows_the_model(
    gateway: Gateway, project_key: tuple[str, str], database_url: str, redis_url: str
) -> None:
    project, key = project_key
    command = ALLOW_COMMAND.search(_chat(gateway, key, HOUSE_MODEL).json()["error"]["message"])
    assert command is not None and command[1] == project and command[2] == HOUSE_MODEL
    ran = await asyncio.to_thread(  # the CLI runs its own event loop
        CliRunner().invoke, cli, ["projects", "models", project, "--add", command[2]],
        env={"DATABASE_URL": database_url},
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert f"project {project} may use: @default, {HOUSE_MODEL}" in ran.output
    unpriced_before = _unpriced_other(gateway)
    deadline = time.monotonic() + 30  # grants are cached for 0.5 s; this bounds a failure
    while (answer := _chat(gateway, key, HOUSE_MODEL)).status_code == 403:
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(0.1)
    assert answer.status_code == 200, answer.text
    assert _chat(gateway, key, HOUSE_MODEL).status_code == 200
    assert _chat(gateway, key, "gpt-4o-mini").status_code == 200  # @default: priced ones still
    request_ids = {answer.headers["x-request-id"]}
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id in request_ids)
    assert event.unpriced is True and event.cost_usd == 0 and event.model == HOUSE_MODEL
    # Not configured by the operator, so counted as "other" (the label takes no caller's
    # string); each request counted, the model logged once however often it is used.
    assert _unpriced_other(gateway) - unpriced_before == 2
    assert gateway.process.log().count(f"'{HOUSE_MODEL}' has no price") == 1


def test_the_gateway_serves_no_api_schema(gateway: Gateway) -> None:
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert httpx.get(gateway.url + path, timeout=10).status_code == 404, path
