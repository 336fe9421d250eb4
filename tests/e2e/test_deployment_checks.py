"""A real ``watchllm up --fake-provider`` stack as a new user starts it, then ``watchllm
check`` and ``watchllm loadtest`` against it, run as an operator runs them (subprocesses,
exit codes, the lines they print), and last a Ctrl-C that stops it all cleanly. One
stack for the module: each start costs a whole embedded system. ``make test-quick``
runs the check test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.embedded_stack import EmbeddedStack, Project, embedded_stack
from tests.support.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

CHECKS = ("health", "chat", "rate limits", "stream", "cache", "metrics", "analytics")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with embedded_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def project(stack: EmbeddedStack) -> Project:
    return stack.create_project("checked")


def _lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """``check``'s output by check name: 'PASS  chat        answered …' → {'chat': 'PASS …'}."""
    found = {}
    for line in done.stdout.splitlines():
        for name in CHECKS:
            if line[6:].startswith(name + " "):
                found[name] = line
    return found


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr


def _requests_recorded(stack: EmbeddedStack, project_id: str, within: float = 60) -> int:
    now = datetime.now(UTC)
    params = {"project_id": project_id, "start": (now - timedelta(hours=1)).isoformat(),
              "end": (now + timedelta(hours=1)).isoformat()}  # fmt: skip
    deadline = time.monotonic() + within  # bounds a failure only
    while True:
        answer = httpx.post(f"{stack.analytics_url}/v1/queries/project_totals", json=params,
                            headers=stack.analytics_auth, timeout=5).json()  # fmt: skip
        columns = [c["name"] if isinstance(c, dict) else c for c in answer["columns"]]
        requests = int(answer["rows"][0][columns.index("requests")]) if answer["rows"] else 0
        if requests or time.monotonic() > deadline:
            return requests
        time.sleep(0.2)


def test_up_runs_everything_embedded_and_a_key_gets_a_completion(stack: EmbeddedStack) -> None:
    """What a new user does first: a project, a key, a completion through the SDK, and
    the request recorded where the dashboard reads it."""
    first = stack.create_project("demo")
    with openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=first.key,
                       max_retries=0) as sdk:  # fmt: skip
        answer = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "first light"}]
        )
    assert (answer.choices[0].message.content or "").startswith("Echo: first light")
    services = httpx.get(f"{stack.gateway_url}/health", timeout=5).json()["services"]
    assert services["limiter"] == services["cache"] == services["analytics"] == "up"
    assert services["clickhouse"] == "connected" and services["qdrant"] == "connected"
    # gateway → events stream → analytics → ClickHouse, and the dashboard's query sees it
    assert _requests_recorded(stack, first.project_id) == 1
    dashboard = f"http://127.0.0.1:{stack.env['WATCHLLM_DASHBOARD_PORT']}/_stcore/health"
    deadline = time.monotonic() + 60  # started last, after runtime.json
    while True:
        try:
            if httpx.get(dashboard, timeout=5).text == "ok":
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, stack.log()
        time.sleep(0.2)
    # `up` prints where everything is once the dashboard (started last) is up
    deadline = time.monotonic() + 60
    while "gateway:   http://127.0.0.1:" not in stack.log():
        assert time.monotonic() < deadline, stack.log()
        time.sleep(0.1)


def test_check_passes_on_a_fresh_stack(stack: EmbeddedStack, project: Project) -> None:
    done = stack.watchllm("check", "--url", stack.gateway_url, "--key", project.key,
                          "--analytics-url", stack.analytics_url)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done)
    assert set(lines) == set(CHECKS), done.stdout
    assert all(line.startswith("PASS") for line in lines.values()), done.stdout
    assert "hit after" in lines["cache"] and "stored" in lines["analytics"]
    assert done.stdout.rstrip().endswith(f"check: all passed ({stack.gateway_url})")
    sys.stdout.write(done.stdout)  # `make test-quick` shows it (pytest -rP)


def test_a_project_without_cache_passes_and_analytics_needs_its_id(stack: EmbeddedStack) -> None:
    uncached = stack.create_project("uncached", cache=False)
    args = ["check", "--url", f"{stack.gateway_url}/v1", "--key", uncached.key,
            "--analytics-url", stack.analytics_url, "--json"]  # fmt: skip
    without_id = stack.watchllm(*args)
    assert without_id.returncode == 1, without_id.stdout + without_id.stderr
    checks = {c["name"]: c for c in json.loads(without_id.stdout)["checks"]}
    assert checks["cache"]["status"] == "pass" and "bypass" in checks["cache"]["detail"]
    assert checks["analytics"]["status"] == "fail"
    assert checks["analytics"]["hint"] == "pass --project-id"
    with_id = stack.watchllm(*args, "--project-id", uncached.project_id)
    assert with_id.returncode == 0, with_id.stdout
    assert json.loads(with_id.stdout)["ok"] is True


def test_check_fails_on_an_analytics_url_nobody_answers(
    stack: EmbeddedStack, project: Project
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    done = stack.watchllm("check", "--url", stack.gateway_url, "--key", project.key,
                          "--analytics-url", closed)  # fmt: skip
    assert done.returncode == 1
    lines = _lines(done)
    analytics = lines["analytics"]
    assert analytics.startswith("FAIL") and f"cannot connect to {closed}" in analytics, analytics
    assert "check --analytics-url" in analytics
    assert all(lines[name].startswith("PASS") for name in CHECKS[:-1]), done.stdout
    assert done.stdout.rstrip().endswith("check: 1 of 7 failed")
    _no_traceback(done)


def test_metrics_are_read_from_their_own_port_never_the_api_port(
    stack: EmbeddedStack, project: Project
) -> None:
    """`up` serves the gateway's /metrics on WATCHLLM_GATEWAY_METRICS_PORT, which check
    finds by default (the passing run above); pointed at the API port it finds nothing."""
    done = stack.watchllm("check", "--url", stack.gateway_url, "--key", project.key,
                          "--metrics-url", stack.gateway_url, "--json")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["metrics"]["status"] == "fail"
    assert checks["metrics"]["detail"] == f"{stack.gateway_url}/metrics answered HTTP 404"
    assert "pass --metrics-url" in checks["metrics"]["hint"]
    assert checks["analytics"]["status"] == "skip"  # no --analytics-url
    assert all(c["status"] == "pass" for name, c in checks.items()
               if name not in ("metrics", "analytics"))  # fmt: skip


@pytest.mark.parametrize("command", ["check", "loadtest"])
def test_a_refused_key_or_an_unreachable_gateway_is_one_clear_line(
    stack: EmbeddedStack, command: str
) -> None:
    refused = stack.watchllm(command, "--url", stack.gateway_url, "--key", "lgw_not_a_key")
    unreachable = stack.watchllm(command, "--url", f"http://127.0.0.1:{free_port()}",
                                 "--key", "lgw_whatever")  # fmt: skip
    for done in (refused, unreachable):
        assert done.returncode == 1, done.stdout + done.stderr
        _no_traceback(done)
    if command == "check":
        assert "FAIL  chat        401 invalid_api_key" in refused.stdout
        assert "check --key" in refused.stdout
        assert "FAIL  health      cannot connect to" in unreachable.stdout
    else:
        assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
        assert refused.stderr.startswith("Error: the gateway refused the first request (401")
        assert unreachable.stderr.startswith("Error: cannot connect to http://127.0.0.1:")
        assert len(unreachable.stderr.strip().splitlines()) == 1


def test_loadtest_records_every_answered_request(stack: EmbeddedStack, project: Project) -> None:
    done = stack.watchllm("loadtest", "--url", stack.gateway_url, "--key", project.key,
                          "--rate", "20", "--duration", "3", "--stream-share", "0.25",
                          "--repeat-share", "0.2", "--seed", "7",
                          "--analytics-url", stack.analytics_url, "--json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["sent"] == report["ok"] == 60 and report["errors"] == 0
    assert report["recorded"] == report["ok"] and report["recorded_method"] == "request_id"
    assert report["p50_ms"] <= report["p90_ms"] <= report["p99_ms"]
    assert report["achieved_rps"] > 0 and report["cache_hits"] >= 0
    assert 0 < report["streams"] < 60
    assert report["project_id"] == project.project_id


def test_check_fails_while_the_cache_service_is_stopped(
    stack: EmbeddedStack, project: Project
) -> None:
    """SIGSTOP (not a kill: ``up`` would stop everything) the cache service, which alone
    stores answers: the repeated request stays a miss and the check says what to do."""
    pids = stack.service_pids("watchllm_cache")
    assert pids, stack.log()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        done = stack.watchllm("check", "--url", stack.gateway_url, "--key", project.key)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert done.returncode == 1, done.stdout
    cache = _lines(done)["cache"]
    assert cache.startswith("FAIL  cache       the same request was still a miss"), done.stdout
    assert "the cache service stores answers after they are sent" in cache
    _no_traceback(done)
    stack.wait_healthy()  # it resumes: later users of the stack find it whole


def test_properties_and_the_end_user_reach_the_request_log(
    stack: EmbeddedStack, project: Project
) -> None:
    """Gateway → events stream → analytics → the named queries, on the whole stack."""
    since = datetime.now(UTC) - timedelta(minutes=1)
    with openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=project.key,
                       max_retries=0, timeout=30) as sdk:  # fmt: skip
        sdk.chat.completions.create(
            model="gpt-4o-mini", user="stack-user-1",
            messages=[{"role": "user", "content": "attribute me end to end"}],
            extra_headers={"x-watchllm-property-feature": "e2e", "x-watchllm-no-cache": "1"},
        )  # fmt: skip
    window = {"project_id": project.project_id, "start": since.isoformat(),
              "end": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}  # fmt: skip

    def ask(name: str, **params: Any) -> list[dict[str, Any]]:
        url, auth = f"{stack.analytics_url}/v1/queries/{name}", stack.analytics_auth
        answer = httpx.post(url, json={**window, **params}, headers=auth, timeout=30).json()
        columns = [c["name"] if isinstance(c, dict) else c for c in answer["columns"]]
        return [dict(zip(columns, row, strict=True)) for row in answer["rows"]]

    deadline = time.monotonic() + 30
    while not (rows := ask("project_request_log", end_user="stack-user-1")):
        assert time.monotonic() < deadline, "the request never reached the request log"
        time.sleep(0.2)
    assert [(r["properties"], r["end_user"]) for r in rows] == [
        ({"feature": "e2e"}, "stack-user-1")
    ]
    by_feature = {
        r["value"]: r["requests"] for r in ask("project_usage_by_property", property="feature")
    }
    assert by_feature["e2e"] == 1


def _ask(stack: EmbeddedStack, name: str, **params: Any) -> list[dict[str, Any]]:
    url, auth = f"{stack.analytics_url}/v1/queries/{name}", stack.analytics_auth
    answer = httpx.post(url, json=params, headers=auth, timeout=30).json()
    columns = [c["name"] if isinstance(c, dict) else c for c in answer["columns"]]
    return [dict(zip(columns, row, strict=True)) for row in answer["rows"]]


def _logged(stack: EmbeddedStack, project: Project, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30  # bounds a failure only
    params = {"project_id": project.project_id, "request_id": request_id}
    while not (rows := _ask(stack, "request_bodies", **params)):
        assert time.monotonic() < deadline, f"the bodies of {request_id} were never stored"
        time.sleep(0.2)
    (row,) = rows
    return row


PII = "ana@example.org 4242 4242 4242 4242 ACCT-5521"  # echoed by the fake provider


def test_bodies_are_logged_redacted_in_both_shapes_only_for_projects_that_turned_it_on(
    stack: EmbeddedStack, project: Project
) -> None:
    """Off by default (``project`` never turned it on); on, every request's request and
    answer (a stream assembled, a cache hit's answer) reach ``request_bodies`` once,
    with emails, cards, keys and the project's own regex masked; each project reads
    only its own."""
    since = datetime.now(UTC) - timedelta(minutes=1)
    quiet = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=project.key, max_retries=0)
    quiet.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "user", "content": "quiet-marker never logged"}])  # fmt: skip
    loud = stack.create_project("loud")
    shown = stack.watchllm("projects", "logging", "loud", "--bodies", "on", "--redact",
                           "email,phone,card,secret", "--redact", r"ACCT-\d+")  # fmt: skip
    assert "bodies on, retention 30 days" in shown.stdout, shown.stderr
    secret = f"{PII} my key {loud.key} and sk-ant-api03-Zyx987wvuTSR"
    sdk = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=loud.key, max_retries=0)
    ask = [{"role": "user", "content": secret}]
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask)
    assert "ana@example.org" in raw.parse().choices[0].message.content  # the caller's is whole
    plain = _logged(stack, loud, raw.headers["x-request-id"])
    streamed = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ask, stream=True, extra_headers={"x-watchllm-no-cache": "1"}
    )
    pieces = [c.choices[0].delta.content or "" for c in streamed.parse() if c.choices]
    claude = anthropic.Anthropic(base_url=stack.gateway_url, api_key=loud.key, max_retries=0)
    answered = claude.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=50, messages=ask
    )  # type: ignore[arg-type]
    assert "ana@example.org" in answered.parse().content[0].text  # type: ignore[union-attr]
    for row in (
        plain,
        _logged(stack, loud, streamed.headers["x-request-id"]),
        _logged(stack, loud, answered.headers["x-request-id"]),
    ):
        both = row["request"] + row["response"]
        assert "[REDACTED:email] [REDACTED:card] [REDACTED:regex]" in both
        for kept in ("ana@", "4242", "ACCT-", loud.key[:12], "sk-ant-api03"):
            assert kept not in both, (kept, both)
        assert "[REDACTED:secret]" in row["request"]
    answer = json.loads(_logged(stack, loud, streamed.headers["x-request-id"])["response"])
    assert answer["choices"][0]["message"]["content"] == "".join(pieces).replace(
        "ana@example.org 4242 4242 4242 4242", "[REDACTED:email] [REDACTED:card]"
    )
    # A cache hit logs the answer it served (the store lands after the first answer).
    deadline = time.monotonic() + 30
    while (
        hit := sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask)
    ).headers["x-watchllm-cache"] != "hit":
        assert time.monotonic() < deadline, "the answer was never served from the cache"
        time.sleep(0.2)
    assert _logged(stack, loud, hit.headers["x-request-id"])["response"] == plain["response"]
    # Once per request; only the project's own; never the quiet project's.
    window = {
        "start": since.isoformat(),
        "end": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
    }

    def search() -> list[dict[str, Any]]:
        return _ask(stack, "project_request_search", project_id=loud.project_id,
                    text="REDACTED:regex", **window)  # fmt: skip

    deadline = time.monotonic() + 30  # bodies and events travel apart: both stored
    found = search()
    while {row["status"] for row in found} != {"ok"}:
        log = _ask(stack, "project_request_log", project_id=loud.project_id, **window)
        assert time.monotonic() < deadline, (found, log)
        time.sleep(0.2)
        found = search()
    ids = [r["request_id"] for r in found]
    assert len(ids) == len(set(ids)) and raw.headers["x-request-id"] in ids
    assert hit.headers["x-request-id"] in ids
    assert _ask(stack, "request_bodies", project_id=project.project_id,
                request_id=raw.headers["x-request-id"]) == []  # fmt: skip
    assert _ask(stack, "project_request_search", project_id=project.project_id,
                text="quiet-marker", **window) == []  # fmt: skip
    quiet.close(), sdk.close(), claude.close()


def test_ctrl_c_stops_everything_cleanly(stack: EmbeddedStack) -> None:
    """Last in the module: SIGINT (Ctrl-C) ends `up` with 0 after stopping every
    service; it removes runtime.json and nothing answers on the gateway's port."""
    stack.process.send_signal(signal.SIGINT)
    returncode = stack.process.wait(timeout=60)
    assert returncode == 0, stack.log()
    assert stack.log().rstrip().endswith("stopped")
    assert not (stack.data_dir / "runtime.json").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.gateway_url}/livez", timeout=1)
