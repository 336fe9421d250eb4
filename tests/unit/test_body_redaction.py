"""What body logging masks before a body leaves the gateway (``body_redaction``) and how
a body is prepared (``body_log``): secrets always, the project's choices, Luhn-checked
cards, its own regexes, and a visible marker where a body was cut."""

from __future__ import annotations

import uuid

import orjson
import pytest

from watchllm_gateway.body_log import BodyCapture, BodyLog
from watchllm_gateway.body_redaction import redactor
from watchllm_gateway.endpoints import CHAT_COMPLETIONS
from watchllm_gateway.exchange import Exchange
from watchllm_shared.accounts import BodyLogging, CacheSettings, KeyGrant, Plan
from watchllm_shared.contracts.request_bodies import MAX_BODY_CHARS, RequestBodies

pytestmark = pytest.mark.unit

TEXT = (
    "mail jane.doe+x@mail.example.co.uk or call +1 (415) 555-0100 / 020 7946 0958;"
    " card 4242 4242 4242 4242 or 4000-0566-5566-5556, not 4242 4242 4242 4241;"
    " keys sk-proj-Abc123def456ghi, sk-ant-api03-Zyx987_wvu, lgw_live_0123456789abcdef;"
    " Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload; ACCT-20931 on 2026-12-04 12:30"
)


def test_every_named_redaction_and_a_projects_regex() -> None:
    masked = redactor(("email", "phone", "card", "secret", r"ACCT-\d+"))(TEXT)
    assert masked == (
        "mail [REDACTED:email] or call [REDACTED:phone] / [REDACTED:phone];"
        " card [REDACTED:card] or [REDACTED:card], not 4242 4242 4242 4241;"
        " keys [REDACTED:secret], [REDACTED:secret], [REDACTED:secret];"
        " Authorization: [REDACTED:secret]; [REDACTED:regex] on 2026-12-04 12:30"
    )


def test_secrets_are_masked_whatever_the_project_chose() -> None:
    masked = redactor(())(TEXT)
    for secret in ("sk-proj-Abc", "sk-ant-api03", "lgw_live", "eyJhbGci"):
        assert secret not in masked
    assert "jane.doe+x@mail.example.co.uk" in masked and "4242 4242 4242 4242" in masked
    header = redactor(())('{"headers": {"Authorization": "Basic dXNlcjpwYXNz", "x": 1}}')
    assert header == '{"headers": {"Authorization": "[REDACTED:secret]", "x": 1}}'


def _grant(setting: BodyLogging) -> KeyGrant:
    return KeyGrant(uuid.uuid4(), uuid.uuid4(), "p", Plan.PRO, True, None, 1000,
                    CacheSettings(), setting)  # fmt: skip


class _Publisher:
    """Collects what ``BodyLog`` hands over (the stream writer itself is tested apart)."""

    def __init__(self) -> None:
        self.sent: list[RequestBodies] = []

    def publish(self, fields: dict[str, bytes]) -> None:
        self.sent.append(RequestBodies.model_validate_json(fields["data"]))


def _published(exchange: Exchange) -> RequestBodies:
    publisher = _Publisher()
    BodyLog(publisher).publish(exchange)  # type: ignore[arg-type]
    (sent,) = publisher.sent
    return sent


def test_a_body_over_the_cap_is_cut_with_a_marker_and_still_redacted() -> None:
    exchange = Exchange(CHAT_COMPLETIONS)
    exchange.grant = _grant(BodyLogging(True, 3, ("email",)))
    # The email straddles the cap: redaction reads past it, so no half address is kept.
    raw = ("x" * (MAX_BODY_CHARS - 5) + " jane@example.com " + "y" * 1000).encode()
    exchange.bodies = BodyCapture(exchange.grant.bodies, raw)
    exchange.bodies.answer = b'{"ok": true}'
    sent = _published(exchange)
    assert sent.request.endswith("…[truncated by WatchLLM: 1013 more characters]")
    assert "jane@" not in sent.request and sent.request.startswith("x" * 100)
    assert sent.response == '{"ok":true}' and sent.retention_days == 3  # re-encoded JSON


def test_a_json_body_is_redacted_value_by_value_and_stays_json() -> None:
    exchange = Exchange(CHAT_COMPLETIONS)
    exchange.grant = _grant(BodyLogging(True))
    sent = {"created": 1796359888, "n": 4242424242424242, "user": "jane\u0040example.com",
            "headers": {"Authorization": "Basic dXNlcjpwYXNz"}}  # fmt: skip
    exchange.bodies = BodyCapture(exchange.grant.bodies, orjson.dumps(sent))
    exchange.bodies.answer = b'{"id": "chatcmpl-1", "created": 1796359889}'
    logged = _published(exchange)
    assert orjson.loads(logged.request) == {
        "created": 1796359888,
        "n": 4242424242424242,
        "user": "[REDACTED:email]",
        "headers": {"Authorization": "[REDACTED:secret]"},
    }  # numbers are not strings: a timestamp is no phone number, an id no card
    assert orjson.loads(logged.response) == {"id": "chatcmpl-1", "created": 1796359889}


def test_json_that_cannot_be_written_back_is_redacted_as_text() -> None:
    exchange = Exchange(CHAT_COMPLETIONS)
    exchange.grant = _grant(BodyLogging(True))
    deep = b"[" * 3000 + b'"mail jane@example.com"' + b"]" * 3000  # past Python's recursion
    huge = b'{"n": 123456789012345678901234567890, "to": "jane@example.com"}'
    for raw in (deep, huge):
        exchange.bodies = BodyCapture(exchange.grant.bodies, raw)
        logged = _published(exchange).request
        assert "jane@" not in logged and "[REDACTED:email]" in logged


def test_a_stream_is_logged_as_the_answer_it_assembles_to() -> None:
    exchange = Exchange(CHAT_COMPLETIONS)
    exchange.grant = _grant(BodyLogging(True))
    exchange.bodies = BodyCapture(exchange.grant.bodies, b'{"model": "m"}')
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi "}}]},
              {"choices": [{"index": 0, "delta": {"content": "you@x.io"},
                            "finish_reason": "stop"}]}]  # fmt: skip
    for chunk in chunks:
        exchange.bodies.add_event(b"data: " + orjson.dumps({"id": "c", **chunk}) + b"\n\n")
    exchange.bodies.add_event(b"data: [DONE]\n\n")
    answer = orjson.loads(_published(exchange).response)
    assert answer["choices"][0]["message"]["content"] == "Hi [REDACTED:email]"
