"""The caller's properties and end user, read from headers and the body (``attribution``):
what is kept, what is refused with the header named, and which user wins."""

from __future__ import annotations

import pytest

from watchllm_gateway.attribution import (
    MAX_PROPERTIES,
    MAX_USER_CHARS,
    MAX_VALUE_CHARS,
    read_attribution,
)
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.settings import ProviderKind

pytestmark = pytest.mark.unit

OPENAI, ANTHROPIC = ProviderKind.OPENAI, ProviderKind.ANTHROPIC


def headers(*pairs: tuple[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    """As the ASGI scope has them: names lower case, values as sent."""
    return [(n.lower().encode(), v if isinstance(v, bytes) else v.encode()) for n, v in pairs]


def test_properties_and_the_user_header_are_read_and_other_headers_ignored() -> None:
    found = read_attribution(headers(
        ("content-type", "application/json"), ("X-WatchLLM-Property-Feature", "summary"),
        ("x-watchllm-property-customer.tier", "gold plan ✓"), ("x-watchllm-user", "user-42"),
        ("x-watchllm-cache-ttl", "60"), ("x-watchllm-propertyless", "x"),
    ))  # fmt: skip
    assert found.properties == {"feature": "summary", "customer.tier": "gold plan ✓"}
    assert found.user == "user-42"
    assert read_attribution(headers(("authorization", "Bearer x"))).properties == {}


def test_the_header_user_wins_over_the_body_and_the_body_field_is_each_apis_own() -> None:
    body = {"user": "from-openai-body", "metadata": {"user_id": "from-anthropic-body"}}
    named = read_attribution(headers(("x-watchllm-user", "from-header")))
    assert named.end_user(OPENAI, body) == named.end_user(ANTHROPIC, body) == "from-header"
    unnamed = read_attribution([])
    assert unnamed.end_user(OPENAI, body) == "from-openai-body"
    assert unnamed.end_user(ANTHROPIC, body) == "from-anthropic-body"
    assert unnamed.end_user(OPENAI, {"user": 7}) is None  # the provider judges it, not us
    assert unnamed.end_user(ANTHROPIC, {"metadata": "x"}) is None
    assert unnamed.end_user(OPENAI, {"user": ""}) is None
    assert unnamed.end_user(OPENAI, {"user": "u" * 1000}) == "u" * MAX_USER_CHARS


@pytest.mark.parametrize(
    ("sent", "header", "why"),
    [
        ([("x-watchllm-property-", "v")], "x-watchllm-property-", "must name a property"),
        ([("x-watchllm-property-a b", "v")], "x-watchllm-property-a b", "must name a property"),
        ([("x-watchllm-property-" + "n" * 65, "v")], "x-watchllm-property-" + "n" * 65,
         "must name a property of 1 to 64"),
        ([("x-watchllm-property-f", "")], "x-watchllm-property-f", "is empty"),
        ([("x-watchllm-property-f", "v" * (MAX_VALUE_CHARS + 1))], "x-watchllm-property-f",
         f"is longer than {MAX_VALUE_CHARS} characters"),
        ([("x-watchllm-property-f", b"\xff\xfe")], "x-watchllm-property-f", "is not UTF-8"),
        ([("x-watchllm-property-f", "a\tb")], "x-watchllm-property-f", "control character"),
        ([("x-watchllm-property-f", "1"), ("X-WatchLLM-Property-F", "2")],
         "x-watchllm-property-f", "more than once"),
        ([(f"x-watchllm-property-p{i}", "v") for i in range(MAX_PROPERTIES + 1)],
         f"x-watchllm-property-p{MAX_PROPERTIES}", f"too many (at most {MAX_PROPERTIES})"),
        ([("x-watchllm-user", "u" * (MAX_USER_CHARS + 1))], "x-watchllm-user", "is longer"),
        ([("x-watchllm-user", "a"), ("x-watchllm-user", "b")], "x-watchllm-user", "more than"),
    ],
)  # fmt: skip
def test_a_bad_header_is_a_400_naming_it(
    sent: list[tuple[str, str | bytes]], header: str, why: str
) -> None:
    with pytest.raises(GatewayError) as refused:
        read_attribution(headers(*sent))
    assert refused.value.status == 400
    assert refused.value.message.startswith(f"Header {header} ")
    assert why in refused.value.message
    expected = "invalid_user_header" if header == "x-watchllm-user" else "invalid_property_header"
    assert refused.value.code == expected


def test_exactly_the_most_properties_allowed_are_kept() -> None:
    sent = headers(*((f"x-watchllm-property-p{i}", str(i)) for i in range(MAX_PROPERTIES)))
    assert len(read_attribution(sent).properties) == MAX_PROPERTIES
