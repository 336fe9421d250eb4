"""The fast reader of canonical events never disagrees with the contract.

The rule (``watchllm_analytics.canonical``): when it answers, the contract (pydantic)
accepts the same document and builds exactly the same row; when in doubt it answers
None and the contract decides. Checked on events as producers write them (where it must
answer) and on near-miss documents (where it may pass).
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.analytics.conftest import make_event
from watchllm_analytics import canonical
from watchllm_analytics.canonical import canonical_values
from watchllm_analytics.rows import (
    COLUMNS,
    EventRow,
    UnreadableEvent,
    decode_entry,
    to_arrow,
    to_row,
)
from watchllm_shared.contracts import RequestCompleted, RequestStatus

pytestmark = pytest.mark.unit


def by_contract(data: bytes) -> tuple[Any, ...] | None:
    """The row values the contract's codec gives, or None when it refuses the document."""
    try:
        event = RequestCompleted.from_stream_fields({b"data": data})
        return to_row(b"1-0", {b"data": data}, event).values
    except (ValueError, UnreadableEvent):  # pydantic's ValidationError is a ValueError
        return None


COSTS = [COLUMNS.index("cost_usd"), COLUMNS.index("cost_saved_usd")]


def stored(values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """The values as the table stores them (costs are decimal strings: compare numbers)."""
    if values is None:
        return None
    return tuple(Decimal(v) if i in COSTS else v for i, v in enumerate(values))


def assert_agrees(data: bytes, *, must_answer: bool = False) -> None:
    fast, slow = canonical_values(data), by_contract(data)
    if must_answer:
        assert fast is not None, data
    if fast is not None:
        assert slow is not None, f"the contract refuses what the fast path read: {data!r}"
        assert stored(fast) == stored(slow), data
        assert [type(v) for v in fast] == [type(v) for v in slow], data
        assert fast[1].utcoffset() == slow[1].utcoffset() == timedelta(0)
        assert to_arrow([EventRow(b"1-0", {}, fast)]).equals(to_arrow([EventRow(b"1-0", {}, slow)]))
    try:
        decoded = decode_entry(b"1-0", {b"data": data}).values
    except UnreadableEvent:
        decoded = None
    assert stored(decoded) == stored(slow), data


def varied_event(rng: random.Random) -> RequestCompleted:
    """Events as producers write them, over the shapes the fields can take."""
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        seconds=rng.randint(0, 10**8),
        microseconds=rng.choice([0, 1, 500_000, rng.randint(0, 10**6 - 1)]),
    )
    cost = rng.choice([Decimal(0), Decimal("0E-12"), Decimal(rng.randint(0, 10**9)) / 10**12,
                       Decimal(rng.randint(1, 999)) / 10**9, Decimal("12345.678901234567"),
                       Decimal("-0.5"), Decimal(10**25), Decimal(rng.random())])  # fmt: skip
    return make_event(
        project_id=rng.choice([None, uuid.uuid4()]),
        at=moment,
        key_id=rng.choice([None, uuid.uuid4()]),
        model=rng.choice([None, "", "gpt-4o", 'modèle-ü "quoted" \\ \n']),
        provider=rng.choice([None, "openai"]),
        status=rng.choice(list(RequestStatus)),
        error_type=rng.choice([None, "upstream_5xx"]),
        cache_similarity=rng.choice([None, 0.0, 0.9731, 1.0]),
        stream=rng.choice([True, False]),
        prompt_tokens=rng.choice([0, 1, 2**32 - 1, 2**32]),
        http_status=rng.choice([200, 0, 65535, 65536]),
        upstream_attempts=rng.choice([0, 3, 255, 256]),
        cost_usd=cost,
        upstream_latency_ms=rng.choice([None, 0.0, 1e-9, 123.456]),
        ttfb_ms=rng.choice([None, 5.5]),
        trace_id=rng.choice([None, "0af7651916cd43dd8448eb211c80319c"]),
        cache_key=rng.choice([None, "", "watchllm:cache:exact:" + "ab" * 32]),
        unpriced=rng.choice([None, True, False]),
        deployment=rng.choice([None, "", "gpt-4o-mini[0]", "openai-a"]),
        fallback_model=rng.choice([None, "claude-haiku-4-5"]),
        properties=rng.choice([{}, {"feature": "summary"}, {"feature": "chat", "tier": "gold"},
                               {"é \"q\" \\": "ü \n", "properties": "{}", "": ""}]),
        end_user=rng.choice([None, "", "user-42", 'ü "quoted" \n']),
    )  # fmt: skip


def test_events_as_producers_write_them_are_read_fast_and_identically() -> None:
    rng = random.Random(5)
    for _ in range(3_000):
        event = varied_event(rng)
        data = event.to_stream_fields()["data"]
        in_range = (event.prompt_tokens < 2**32 and event.http_status < 65536
                    and event.upstream_attempts < 256 and event.cost_usd < 10**26)  # fmt: skip
        places = -event.cost_usd.as_tuple().exponent  # type: ignore[operator]
        assert_agrees(data, must_answer=in_range and places <= 12)


NEAR_MISSES: dict[str, list[Any]] = {
    "event_id": [
        str(uuid.uuid4()).upper(),
        uuid.uuid4().hex,
        f"{{{uuid.uuid4()}}}",
        f"urn:uuid:{uuid.uuid4()}",
        " " + str(uuid.uuid4())[1:],
        "0" * 35 + "-",
        "01234567-89ab-cdef-0123-456789abcdeg",
        "0123456-789ab-cdef-0123-456789abcdef",
        "01234567-89ab-cdef-0123-45 789abcdef",
        1,
        None,
    ],
    "occurred_at": [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.5Z",
        "2026-01-02T03:04:05",
        "2026-01-02T03:04:05+02:00",
        "2026-01-02T03:04:05,5Z",
        "2026-01-02 03:04:05Z",
        "2026-01-02T03:04:05.1234567Z",
        "2026-01-02T24:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-02T03:04:60Z",
        "2026-01-02",
        "2026-01-02T03:04Z",
        "२०२६-01-02T03:04:05Z",
        "2026-01-02T03:04:05.Z",
        "2026-01-02T03:04:05.-1Z",
        1767323045,
        1767323045.5,
        "1767323045",
        # outside the stored times (1970-01-01T00:00:00Z to before 2106-02-07T06:28:16Z)
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        "1969-12-31T23:59:59.9995Z",
        "1800-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "2106-02-07T06:28:15.999999Z",
        "2106-02-07T06:28:16Z",
        "2106-02-07T08:28:15+02:00",
        "2150-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
    ],
    "project_id": [None, "", "00000000-0000-0000-0000-000000000000", str(uuid.uuid4()).upper()],
    "http_status": [200.0, "200", True, -1, 65536, 2**70],
    "prompt_tokens": [1.0, "1", False, -1, 2**32, None],
    "upstream_attempts": [1.0, 256, None],
    "latency_ms": [12, "12.5", True, None, 1e308, -0.0],
    "cache_similarity": [1, "0.5", True],
    "stream": [1, 0, "true", None],
    "status": ["OK", "Ok", None, 1, ["ok"]],
    "cache": ["HIT", None, 1, {"a": 1}],
    "schema_version": [1.0, "1", True, 2, None],
    "cost_usd": [
        0.5,
        1,
        "0.5 ",
        " 0.5",
        "1_000",
        "+1",
        "NaN",
        "Infinity",
        "-0",
        "1e-7",
        "1.5e-7",
        "1.5E-7",
        "1.5E-13",
        "1.5E+7",
        ".5",
        "5.",
        "0.0000000000001",
        "1E+26",
        "9" * 26,
        "9" * 27,
        "1.5E-007",
        None,
    ],
    "model": [1, ["a"], None, ""],
    "request_id": [1, None, ""],
    "trace_id": [1, ""],
    "cache_key": [1, "", ["k"], {"k": 1}],
    "unpriced": [1, 0, 1.0, "true", "false", "yes", ["x"], None, True, False],
    "deployment": [1, ["d"], None, ""],
    "fallback_model": [1.5, {"m": 1}, None, "gpt-4o"],
    "properties": [None, [], ["a"], "a", 1, {}, {"a": "b"}, {"a": 1}, {"a": None}, {"a": ["x"]},
                   {"a": {"b": "c"}}, {"a": "1", "b": 2}, {"properties": {}}, {"a": True}],
    "end_user": [1, None, "", ["u"], {"u": 1}, "user-1", True],
}  # fmt: skip


@pytest.mark.parametrize("field", sorted(NEAR_MISSES))
def test_near_miss_documents_are_left_to_the_contract(field: str) -> None:
    base = orjson.loads(make_event(at=datetime(2026, 1, 2, tzinfo=UTC)).to_stream_fields()["data"])
    for value in NEAR_MISSES[field]:
        assert_agrees(json.dumps({**base, field: value}).encode())  # json: ints beyond 64 bits
    assert_agrees(json.dumps({k: v for k, v in base.items() if k != field}).encode())  # absent


def test_documents_that_are_not_events_are_left_to_the_contract() -> None:
    base = make_event().to_stream_fields()["data"]
    for data in [b"", b"null", b"[]", b"[1]", b'"x"', b"{", b"{}", base[:-1], base + b"x",
                 base.replace(b"{", b'{"extra":{"nested":[1,2]},', 1), b"\xff\xfe",
                 base.replace(b'"request_id"', b'"request_id":1,"request_id"', 1)]:  # fmt: skip
        assert_agrees(data)


def test_contract_fields_without_a_column_are_still_type_checked() -> None:
    """A field the contract gained after this reader was written is checked (an optional
    string) or turns the reader off; it never makes the reader accept what the contract
    refuses."""
    assert canonical.FAST_PATHS_ON
    base = orjson.loads(make_event().to_stream_fields()["data"])
    for name in [name for name in RequestCompleted.model_fields if name not in COLUMNS]:
        for value in (5, 1.5, True, ["x"], {"a": 1}, None, "text"):
            assert_agrees(json.dumps({**base, name: value}).encode())


FIRST, LAST = "1970-01-01T00:00:00Z", "2106-02-07T06:28:15.999999Z"
TOO_EARLY = ["1969-12-31T23:59:59.999999Z", "1800-01-01T00:00:00Z", "0001-01-01T00:00:00Z"]
TOO_LATE = ["2106-02-07T06:28:16Z", "2150-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"]


def test_times_the_log_cannot_hold_are_refused_with_the_reason_and_its_bounds_are_read() -> None:
    """A time outside 1970-01-01T00:00:00Z .. 2106-02-07T06:28:16Z (excluded) would be
    stored wrong (DateTime saturates) or dropped by the TTL: never a row, a clear reason."""
    base = orjson.loads(make_event().to_stream_fields()["data"])
    for moment in (FIRST, LAST):
        assert_agrees(orjson.dumps({**base, "occurred_at": moment}), must_answer=True)
    for moment in TOO_EARLY + TOO_LATE + ["2150-01-01T00:00:00", "2106-02-07T08:28:16+02:00"]:
        data = orjson.dumps({**base, "occurred_at": moment})
        assert canonical_values(data) is None
        assert_agrees(data)
        with pytest.raises(UnreadableEvent, match="^occurred_at=.* is outside the times the"
                           " request log can store \\(1970-01-01T00:00:00Z to before"
                           " 2106-02-07T06:28:16Z\\)$"):  # fmt: skip
            decode_entry(b"1-0", {b"data": data})
