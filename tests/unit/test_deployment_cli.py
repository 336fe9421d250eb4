"""``watchllm check``/``loadtest`` without a deployment: option errors, an unreachable
gateway, the open-loop schedule, the report's arithmetic, and reading /metrics."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from click.testing import CliRunner

from tests.support.processes import free_port
from watchllm_shared.cli.deployment.analytics import Recorded
from watchllm_shared.cli.deployment.check import exposes
from watchllm_shared.cli.deployment.commands import gateway_base, metrics_beside
from watchllm_shared.cli.deployment.http1 import Record
from watchllm_shared.cli.deployment.loadreport import lines, summarise
from watchllm_shared.cli.deployment.loadtest import (
    LoadOptions,
    LoadRun,
    Outcome,
    Preflight,
    chat_target,
)
from watchllm_shared.cli.deployment.openloop import run_schedule
from watchllm_shared.cli.deployment.probe import project_of, refusal
from watchllm_shared.cli.main import cli

pytestmark = pytest.mark.unit


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["loadtest", "--rate", "abc"], "Invalid value for '--rate': 'abc' is not a number"),
        (["loadtest", "--duration", "0"], "'0' is out of range: it must be more than 0"),
        (["loadtest", "--stream-share", "1.5"], "'1.5' is out of range: it must be from 0 to 1"),
        (["check", "--url", "127.0.0.1:8080"], "'127.0.0.1:8080' is not an http:// or https://"),
        (["check", "--project-id", "demo"], "'demo' is not a project id"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    base = ["--url", "http://127.0.0.1:1", "--key", "lgw_x"]
    code, _, err = _run(*args[:1], *base, *args[1:])
    assert code == 2 and message in err and "Traceback" not in err


def test_check_against_an_unreachable_gateway_fails_once_and_skips_the_rest() -> None:
    code, out, _ = _run("check", "--url", f"http://127.0.0.1:{free_port()}", "--key", "lgw_x")
    assert code == 1
    rows = out.splitlines()
    assert rows[0].startswith("FAIL  health      cannot connect to http://127.0.0.1:")
    assert rows[0].endswith("— is the gateway running, and is --url its address?")
    assert [r[:4] for r in rows[1:7]] == ["SKIP"] * 6
    assert rows[-1] == "check: 1 of 7 failed"


def test_loadtest_against_an_unreachable_gateway_is_one_error_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = _run("loadtest", "--url", url, "--key", "lgw_x", "--duration", "1")
    assert code == 1 and out == ""
    assert err.startswith(f"Error: cannot connect to {url}") and err.count("\n") == 1


def test_urls_and_refusals_are_read_as_an_operator_gives_them() -> None:
    assert gateway_base("http://gw:8080/v1/") == "http://gw:8080"
    assert gateway_base(" https://gw.example/ ") == "https://gw.example"
    with pytest.raises(ValueError, match="not an http"):
        gateway_base("gw:8080")
    body = b'{"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}'
    assert refusal(httpx.Response(401, content=body)) == (
        "401 invalid_api_key: Incorrect API key provided."
    )
    assert refusal(httpx.Response(502, content=b"<html>")) == "HTTP 502"
    project = uuid.uuid4()
    key = f"watchllm:cache:exact:v2:{{{project}}}:{'a' * 64}"
    assert project_of(httpx.Response(200, headers={"x-watchllm-cache-key": key})) == project
    assert project_of(httpx.Response(200)) is None


def test_the_metrics_listener_is_found_beside_the_gateway_url() -> None:
    """/metrics is not on the gateway's API port: check reads its own listener."""
    assert metrics_beside("http://127.0.0.1:8080", 9180) == "http://127.0.0.1:9180"
    assert metrics_beside("https://gw.example", 9180) == "https://gw.example:9180"
    assert metrics_beside("http://[::1]:8080", 9181) == "http://[::1]:9181"
    (option,) = [p for p in cli.commands["check"].params if p.name == "metrics_url"]
    assert option.type.convert("http://gw:9180/metrics", None, None) == "http://gw:9180"


def test_metrics_count_as_exposed_when_sampled_or_declared() -> None:
    text = (
        "# TYPE watchllm_cache_hits counter\n"
        'watchllm_requests_total{endpoint="/v1/chat/completions",status="200"} 2.0\n'
        'watchllm_latency_seconds_bucket{endpoint="/v1/chat/completions",le="0.5"} 2.0\n'
        "watchllm_cache_misses_total 1.0\n"
    )
    for metric in ("watchllm_requests_total", "watchllm_latency_seconds_bucket",
                   "watchllm_cache_misses_total", "watchllm_cache_hits_total"):  # fmt: skip
        assert exposes(text, metric), metric
    assert not exposes(text, "watchllm_ttfb_seconds_bucket")
    assert exposes("# TYPE watchllm_cache_hits_total counter\n", "watchllm_cache_hits_total")
    assert not exposes("watchllm_requests_created 1.0\n", "watchllm_requests_total")


async def test_the_schedule_is_open_loop_and_catches_up_at_once() -> None:
    """Request i is due at t0 + i/rate; fired never before it is due, and a schedule that
    is already late fires everything due at once, in order (no drift)."""
    fired: list[tuple[int, float, float]] = []

    def fire(index: int, scheduled: float) -> None:
        fired.append((index, scheduled, time.perf_counter()))

    t0 = time.perf_counter() - 1.0  # 1 s late: the first 50 are due already
    await run_schedule(t0, 50.0, 55, fire)
    assert [i for i, _, _ in fired] == list(range(55))
    assert all(s == pytest.approx(t0 + i / 50.0) for i, s, _ in fired)
    assert all(at >= s for _, s, at in fired)
    late = [at for i, _, at in fired[:50]]
    assert max(late) - min(late) < 0.5  # fired in one go, not paced


def _outcome(t: float, status: int = 200, error: str | None = None, sent: bool = True,
             stream: bool = False, latency: float = 0.01, tail: bytes = b"",
             ) -> Outcome:  # fmt: skip
    """A finished request scheduled at ``t``, as the pool leaves its record."""
    record = Record(t)
    record.sent = t + 0.001 if sent else None
    record.done = t + latency if sent and error is None else None
    record.status, record.error = (status if sent else 0), error
    record.headers = {b"x-watchllm-cache": b"miss", b"x-request-id": f"req_{t}".encode()}
    record.tail = tail or (b"data: [DONE]\n\n" if stream else b"}")
    return Outcome(record, stream)


def test_the_report_counts_errors_by_kind_and_latency_from_the_schedule() -> None:
    options = LoadOptions("http://gw", "lgw_x", rate=10, duration=1)
    run = LoadRun(options, Preflight(uuid.uuid4(), 500), t0=0.0)
    run.outcomes = [_outcome(i / 10, latency=0.010 * (i + 1)) for i in range(6)]
    run.outcomes[1].record.headers[b"x-watchllm-cache"] = b"hit"
    run.outcomes[2] = _outcome(0.2, stream=True, latency=0.030)
    run.outcomes += [_outcome(0.6, status=429), _outcome(0.7, error="timeout"),
                     _outcome(0.8, stream=True, tail=b'data: {"choices": []}\n\n'),
                     _outcome(0.9, sent=False)]  # fmt: skip
    report = summarise(run, Recorded(6, "request_id"))
    assert (report.scheduled, report.sent, report.ok, report.errors) == (10, 9, 6, 4)
    assert report.errors_by_status == {"http_429": 1, "timeout": 1, "stream_cut": 1,
                                       "not_sent": 1}  # fmt: skip
    assert report.p50_ms == pytest.approx(35.0) and report.max_ms == pytest.approx(60.0)
    assert report.cache_hits == 1 and report.streams == 2
    assert report.achieved_rps == pytest.approx(6.0)  # 6 answers over the 1 s run
    assert report.recorded == 6 and not report.passed  # errors fail the run
    text = "\n".join(lines(report))
    assert "errors     http_429: 1, timeout: 1, stream_cut: 1, not_sent: 1" in text
    assert "6 of 6 answered requests found in analytics by request id" in text


def test_a_clean_run_passes_only_when_every_answer_was_recorded() -> None:
    run = LoadRun(LoadOptions("http://gw", "lgw_x", rate=4, duration=1), Preflight(None, None))
    run.outcomes = [_outcome(i / 4) for i in range(4)]
    assert summarise(run, None).passed
    assert summarise(run, Recorded(4, "request_id")).passed
    assert not summarise(run, Recorded(3, "request_id")).passed
    assert summarise(run, None).as_dict()["recorded"] is None


def test_the_chat_target_follows_the_gateway_url() -> None:
    plain = chat_target("http://127.0.0.1:8080", "lgw_x")
    assert (plain.host, plain.port, plain.path, plain.tls) == (
        "127.0.0.1",
        8080,
        "/v1/chat/completions",
        False,
    )
    behind = chat_target("https://llm.example.com/watchllm", "lgw_x")
    assert (behind.host, behind.port, behind.path, behind.tls) == (
        "llm.example.com",
        443,
        "/watchllm/v1/chat/completions",
        True,
    )
    request = plain.request(b'{"a":1}')
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
    assert b"Authorization: Bearer lgw_x\r\n" in request
    assert request.endswith(b'Content-Length: 7\r\n\r\n{"a":1}')
