"""Decoding a page at once never disagrees with the contract, entry by entry.

The rule (``watchllm_analytics.page_decoder``): an entry the page decoder turns into a
row is one the contract accepts, with exactly the row the contract's codec builds; every
other entry is judged by the contract, alone. Checked on events as producers write them
(where the fast path must take every entry), on the near-miss documents of
``test_canonical`` placed among good ones, and on pages the JSON reader refuses whole.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from tests.analytics.conftest import make_event
from tests.analytics.test_canonical import (
    FIRST,
    LAST,
    NEAR_MISSES,
    TOO_EARLY,
    TOO_LATE,
    varied_event,
)
from watchllm_analytics.blocks import RowBlock
from watchllm_analytics.canonical import FAST_PATHS_ON, STORED_FIELDS
from watchllm_analytics.page_decoder import DecodedPage, decode_page
from watchllm_analytics.rows import COLUMNS, UnreadableEvent, decode_entry, to_arrow, to_row
from watchllm_shared.contracts import RequestCompleted

pytestmark = pytest.mark.unit

Fields = dict[bytes, bytes]


def by_contract(fields: Fields) -> pa.Table | None:
    """The contract's one-row table for the entry, or None when it refuses the entry."""
    try:
        event = RequestCompleted.from_stream_fields(fields)
        return to_arrow([to_row(b"1-0", fields, event)])
    except (KeyError, ValueError):  # pydantic's ValidationError is a ValueError
        return None


def decode(pages: list[list[Fields]]) -> list[DecodedPage]:
    decoded = []
    for number, page in enumerate(pages):
        entry_ids = [f"{number}-{i}".encode() for i in range(len(page))]
        decoded.append(decode_page(entry_ids, page))
    return decoded


def assert_agrees(page: list[Fields]) -> DecodedPage:
    """Every entry of ``page`` is stored as the contract says, or refused as it says."""
    entry_ids = [f"1-{i}".encode() for i in range(len(page))]
    decoded = decode_page(entry_ids, page)
    rows = {entry_id: i for i, entry_id in enumerate(decoded.block.entry_ids)}
    refused = {index: str(exc) for index, exc in decoded.unreadable}
    assert len(rows) + len(refused) == len(page), "an entry was lost or decoded twice"
    for index, (entry_id, fields) in enumerate(zip(entry_ids, page, strict=True)):
        expected = by_contract(fields)
        if expected is None or index in refused:
            assert expected is None and index in refused, (fields, refused.get(index))
            with pytest.raises(UnreadableEvent) as caught:
                decode_entry(entry_id, fields)
            assert refused[index] == str(caught.value)  # the contract's own message
            continue
        row = rows[entry_id]
        assert decoded.block.fields[row] is fields
        assert decoded.block.table.slice(row, 1).equals(expected), fields
    return decoded


def good(count: int, rng: random.Random | None = None) -> list[Fields]:
    return [
        {b"data": (varied_event(rng) if rng else make_event()).to_stream_fields()["data"]}
        for _ in range(count)
    ]


EVENT = make_event().to_stream_fields()["data"]


def with_changes(**changes: Any) -> Fields:
    document = orjson.loads(make_event().to_stream_fields()["data"])
    document.update(changes)
    return {b"data": json.dumps(document).encode()}  # json: ints beyond 64 bits


def test_events_as_producers_write_them_all_take_the_fast_path_unchanged() -> None:
    rng = random.Random(7)
    for _ in range(6):
        page = good(500, rng)
        decoded = assert_agrees(page)
        in_range = [by_contract(fields) is not None for fields in page]
        assert not decoded.unreadable or not all(in_range)
    plain = good(1_000)
    assert assert_agrees(plain).fast == 1_000


@pytest.mark.parametrize("field", sorted(NEAR_MISSES))
def test_near_misses_among_good_entries_are_left_to_the_contract(field: str) -> None:
    base = orjson.loads(make_event(at=datetime(2026, 1, 2, tzinfo=UTC)).to_stream_fields()["data"])
    for value in NEAR_MISSES[field]:
        odd = {b"data": json.dumps({**base, field: value}).encode()}
        assert_agrees(good(3) + [odd] + good(3))
    absent = {b"data": json.dumps({k: v for k, v in base.items() if k != field}).encode()}
    assert_agrees(good(3) + [absent] + good(3))


def test_a_bad_value_sends_only_its_entry_to_the_contract() -> None:
    page = good(10) + [with_changes(status="weird")] + good(10)
    decoded = assert_agrees(page)
    assert decoded.fast == 20
    assert [index for index, _ in decoded.unreadable] == [10]
    assert "status" in str(decoded.unreadable[0][1])


def test_a_missing_field_is_refused_with_the_contracts_reason() -> None:
    document = orjson.loads(make_event().to_stream_fields()["data"])
    del document["request_id"]
    decoded = assert_agrees(good(5) + [{b"data": orjson.dumps(document)}])
    assert decoded.fast == 5
    assert "request_id" in str(decoded.unreadable[0][1])


def test_a_missing_field_with_a_default_gets_the_contracts_default() -> None:
    document = orjson.loads(make_event().to_stream_fields()["data"])
    for name in ("cache", "stream", "prompt_tokens", "cost_usd", "schema_version", "unpriced"):
        del document[name]
    decoded = assert_agrees(good(5) + [{b"data": orjson.dumps(document)}])
    assert (decoded.fast, len(decoded.block), decoded.unreadable) == (5, 6, [])


# Rows the fast path takes of a page of 40 good entries around an odd one.
WHOLE_PAGE, ALONE, ALL = 0, 40, 41


@pytest.mark.parametrize(
    ("odd", "fast"),
    [
        (with_changes(http_status="200"), WHOLE_PAGE),  # the contract reads it (lax)
        (with_changes(http_status="two hundred"), WHOLE_PAGE),
        (with_changes(latency_ms=True), WHOLE_PAGE),  # the contract reads it as 1.0
        (with_changes(model=["a"]), WHOLE_PAGE),
        (with_changes(occurred_at="2026-02-30T00:00:00Z"), WHOLE_PAGE),  # impossible date
        (with_changes(extra="\ud800"), WHOLE_PAGE),
        ({b"data": b"{not json}"}, WHOLE_PAGE),
        ({b"data": EVENT.replace(b'"model"', b'"model":1,"model"')}, WHOLE_PAGE),  # twice
        ({b"data": EVENT * 2}, WHOLE_PAGE),  # two documents in one entry
        ({b"data": EVENT[:-1] + b',"x":"\xff"}'}, WHOLE_PAGE),  # not UTF-8
        ({b"data": b"{not json"}, ALONE),
        ({b"data": EVENT.replace(b",", b",\n", 1)}, ALL),  # valid, on two lines
        ({b"data": EVENT.replace(b",", b",\n{", 1)}, WHOLE_PAGE),
        ({b"data": b'{"x":"}'}, WHOLE_PAGE),  # ends inside a string
        ({b"data": EVENT.replace(b'"request_id"', b'"request\\u005fid"')}, ALL),  # escaped key
        ({b"data": EVENT.replace(b'"model"', b'"model":"x","mod\\u0065l"')}, WHOLE_PAGE),
        ({b"data": b'{"request_id":}'}, WHOLE_PAGE),
        # properties: the reader skips them, ``_properties`` reads them
        ({b"data": EVENT.replace(b'"properties":{}', b'"properties":{"a":"1"}')}, ALL),
        ({b"data": EVENT.replace(b'"properties":{}', b'"properties":{"a":1}')}, ALONE),
        ({b"data": EVENT.replace(b'"properties":{}', b'"properties":null')}, ALONE),
        ({b"data": EVENT.replace(b'"properties":{}', b'"propertie\\u0073":{"a":"1"}')}, ALL),
        ({b"data": EVENT.replace(b'"properties":{}', b'"x":{"properties":{"a":"1"}}')}, ALL),
        ({b"data": EVENT.replace(b'"properties":{}', b'"a\\"properties":{}')}, ALL),
        (
            {b"data": EVENT.replace(b'"properties":{}', b'"properties":{"a":"1"},"properties":{}')},
            ALL,
        ),
        ({b"data": b""}, ALONE),
        ({b"other": b"{}"}, ALONE),
    ],
    ids=lambda value: repr(next(iter(value.values()))[-40:]) if isinstance(value, dict) else "",
)
def test_what_the_fast_path_refuses_goes_to_the_contract_and_the_rest_is_stored(
    odd: Fields, fast: int
) -> None:
    decoded = assert_agrees(good(20) + [odd] + good(20))
    assert decoded.fast == fast
    assert len(decoded.block) + len(decoded.unreadable) == 41


def test_unknown_fields_are_ignored_as_the_add_only_contract_says() -> None:
    page = [
        with_changes(future_field=1),
        with_changes(future_object={"nested": [1, {"deep": None}], "s": "é"}),
        with_changes(future_field="text"),
    ]
    decoded = assert_agrees(page + good(5))
    assert decoded.fast == 8


def test_times_are_floored_to_the_millisecond_like_the_contract() -> None:
    page = [with_changes(occurred_at="1970-01-01T00:00:00.0005Z"),
            with_changes(occurred_at="2106-02-07T06:28:15.9995Z")]  # fmt: skip
    assert assert_agrees(page).fast == 2


@pytest.mark.parametrize("moment", TOO_EARLY + TOO_LATE)
def test_times_the_log_cannot_hold_go_to_the_contract_which_refuses_them(moment: str) -> None:
    """Like the canonical reader (``test_canonical``), never a row: the same reason."""
    page = good(20) + [with_changes(occurred_at=moment)] + good(20)
    decoded = assert_agrees(page)
    assert decoded.fast == ALONE
    [(index, reason)] = decoded.unreadable
    assert index == 20
    assert str(reason).startswith("occurred_at=") and "outside the times" in str(reason)


def test_times_at_the_edges_of_what_the_log_holds_take_the_fast_path() -> None:
    page = good(5) + [with_changes(occurred_at=FIRST), with_changes(occurred_at=LAST)] + good(5)
    assert assert_agrees(page).fast == 12


def test_an_empty_page_is_an_empty_block() -> None:
    decoded = decode_page([], [])
    assert (len(decoded.block), decoded.unreadable, decoded.fast) == (0, [], 0)


def test_blocks_concatenate_and_select_rows_with_their_entries() -> None:
    pages = decode([good(3), good(2)])
    block = RowBlock.concat([page.block for page in pages])
    assert block.entry_ids == [b"0-0", b"0-1", b"0-2", b"1-0", b"1-1"]
    chosen = block.take([4, 0])
    assert chosen.entry_ids == [b"1-1", b"0-0"]
    assert chosen.table.equals(pa.concat_tables([pages[1].block.table.slice(1, 1),
                                                 pages[0].block.table.slice(0, 1)]))  # fmt: skip
    ids = block.event_ids()
    assert [ids[i * 16 : i * 16 + 16] for i in range(5)] == block.table["event_id"].to_pylist()
    with pytest.raises(ValueError, match="rows for"):
        RowBlock(block.table, block.entry_ids[:-1], block.fields[:-1])


def test_every_contract_field_is_read_so_the_fast_path_is_on() -> None:
    """A field added to the contract must be taught to ``page_decoder`` (and get a
    column); until then the fast path is off, never out of step with the contract."""
    assert FAST_PATHS_ON
    assert STORED_FIELDS == set(COLUMNS)  # one list of stored fields for both fast paths


def test_a_contract_field_without_a_column_is_still_type_checked() -> None:
    extra = [name for name in RequestCompleted.model_fields if name not in COLUMNS]
    for name in extra:
        assert_agrees(good(3) + [with_changes(**{name: 5})] + good(3))
        assert_agrees(good(3) + [with_changes(**{name: "text"})] + good(3))
