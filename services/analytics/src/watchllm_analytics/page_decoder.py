"""Decoding a whole page of stream entries at once, into one Arrow table.

Decoding event by event in Python (``canonical``, ~10 µs an event with its share of the
Arrow conversion) was most of the service's CPU. Here the page's JSON documents are
joined into one buffer, read by pyarrow's JSON reader with an explicit schema, checked
column by column with pyarrow compute and converted to the request log's columns
(``rows.ARROW_SCHEMA``), all in C++: ~4 µs an event, 2.4 of them in the JSON reader
(best of several runs on this machine, pages of 2,000). The rule is ``canonical``'s:

    a row comes out of the fast path ⇒ the contract accepts the document, and the row
    built from it has exactly these values.

So the fast path only takes the form every producer writes (the contract's own encoder):
- per entry, before reading: a ``data`` field that starts with ``{`` and ends with
  ``}``; the documents are joined one a line and the reader must return exactly one row
  per document, so row *i* is entry *i* (the argument is in ``_documents``);
- the reader: each field of the contract of its JSON type (string, integer, number,
  boolean or null; a JSON integer is taken where a float belongs, as the contract
  does), unknown fields ignored (the contract is add-only and ignores them too). When
  the contract gains a field this module cannot check, the fast path turns itself off
  (``canonical.FAST_PATHS_ON``) rather than accept what the contract may refuse;
- per row, in columns: the required fields present, no null where the contract has a
  non-null default, ``schema_version`` 1, integers within their column's range, status
  and cache among their values, UUIDs as 8-4-4-4-12 hex digits, times as
  ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z`` within the stored times (from 1970-01-01T00:00:00Z
  up to, not including, 2106-02-07T06:28:16Z: ``canonical.FIRST_STORED_TIME`` and
  ``END_OF_STORED_TIME``; ``rows`` refuses the others and says why), costs as decimal
  strings that fit Decimal(38, 12) without rounding;
- ``properties``, which the reader cannot take (no map type): read per document by
  ``_properties``, from the bytes when there are none (nearly every document: a byte
  search) and by orjson otherwise; an object of strings, or the entry goes to the
  contract.

What the fast path does not take goes one entry at a time through
``rows.decode_entry`` (``canonical``, then the contract), which judges it:
- a row that fails a check: that entry alone;
- a page the reader refuses as a whole (invalid JSON or UTF-8, a value of the wrong JSON
  type, a key given twice, an impossible date: the reader does not say which entry): the
  whole page. A poison message thus costs its page the slow path, never a wrong row and
  never a blocked batch; the contract refuses it with its own message and the pipeline
  parks it in the dead-letter stream.

``tests/analytics/test_page_decoder.py`` checks the rule against the contract on
generated events and on near-miss documents.
"""

from __future__ import annotations

import binascii
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.json as pa_json  # type: ignore[import-untyped]

from watchllm_analytics.blocks import RowBlock
from watchllm_analytics.canonical import (
    END_OF_STORED_TIME,
    FAST_PATHS_ON,
    FIRST_STORED_TIME,
    UNSTORED_STRINGS,
)
from watchllm_analytics.rows import (
    ARROW_SCHEMA,
    PROPERTIES_TYPE,
    EventRow,
    UnreadableEvent,
    decode_entry,
)
from watchllm_analytics.stream_group import Fields
from watchllm_shared.contracts import CacheOutcome, RequestStatus

_STRING, _INT, _FLOAT = pa.string(), pa.int64(), pa.float64()
# How each stored field is read: its JSON type, checked further per row below.
_STORED_FIELDS = pa.schema([
    ("schema_version", _INT), ("event_id", _STRING), ("occurred_at", _STRING),
    ("request_id", _STRING), ("project_id", _STRING), ("key_id", _STRING),
    ("model", _STRING), ("provider", _STRING), ("endpoint", _STRING), ("http_status", _INT),
    ("status", _STRING), ("error_type", _STRING), ("cache", _STRING),
    ("cache_similarity", _FLOAT), ("stream", pa.bool_()), ("prompt_tokens", _INT),
    ("completion_tokens", _INT), ("cost_usd", _STRING), ("cost_saved_usd", _STRING),
    ("latency_ms", _FLOAT), ("upstream_latency_ms", _FLOAT), ("ttfb_ms", _FLOAT),
    ("trace_id", _STRING), ("upstream_attempts", _INT), ("cache_key", _STRING),
    ("unpriced", pa.bool_()), ("deployment", _STRING), ("fallback_model", _STRING),
    ("end_user", _STRING),
])  # fmt: skip
# ``properties`` (an object of any names) is no field the reader can take: Arrow's JSON
# reader has no map type. It ignores the field, and ``_properties`` reads it.
# Contract fields the log has no column for are still read (``canonical.UNSTORED_STRINGS``:
# optional strings), so that the reader refuses what the contract would; a field of any
# other kind turns both fast paths off (``canonical.FAST_PATHS_ON``), and a test fails
# until they learn it.
_READ_SCHEMA = pa.schema([*_STORED_FIELDS, *((name, _STRING) for name in UNSTORED_STRINGS)])
_PARSE = pa_json.ParseOptions(explicit_schema=_READ_SCHEMA, unexpected_field_behavior="ignore")
_MIN_BLOCK = 1 << 20
_EMPTY: dict[str, str] = {}

_UUID = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
_NIL_UUID = "00000000-0000-0000-0000-000000000000"
_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z$"
_MOMENT = pa.timestamp("us", tz="UTC")
_FIRST_MOMENT, _END_OF_MOMENTS = (
    pa.scalar(moment, _MOMENT) for moment in (FIRST_STORED_TIME, END_OF_STORED_TIME)
)
# Costs: the same two forms as ``canonical`` (plain, or str(Decimal)'s scientific form).
_PLAIN_COST = r"^-?[0-9]{1,26}(?:\.[0-9]{1,12})?$"
_SCIENTIFIC_COST = r"^-?[0-9](?:\.(?P<fraction>[0-9]{1,30}))?E(?P<sign>[-+])(?P<power>[0-9]{1,2})$"
_COST_PLACES, _COST_MAX_POWER = 12, 25
_STATUS = pa.array(sorted(status.value for status in RequestStatus))
_CACHE = pa.array(sorted(outcome.value for outcome in CacheOutcome))
_RANGES = {"http_status": 2**16, "prompt_tokens": 2**32, "completion_tokens": 2**32,
           "upstream_attempts": 2**8}  # fmt: skip
_REQUIRED = ("request_id", "endpoint", "stream", "latency_ms")
_EMPTY_IF_NULL = ("model", "provider", "error_type", "trace_id", "cache_key", "deployment",
                  "fallback_model", "end_user")  # fmt: skip
_PROPERTIES_KEY = b'"properties"'
_NO_PROPERTIES = b'"properties":{}'  # what every producer writes when there are none
_BACKSLASH = b"\\"  # a key may be written with \u escapes: read such documents whole
_COSTS = ("cost_usd", "cost_saved_usd")


@dataclass(frozen=True, slots=True)
class DecodedPage:
    block: RowBlock  # every readable entry of the page, in no particular order
    unreadable: list[tuple[int, UnreadableEvent]]  # by index in the page, with the reason
    fast: int  # rows that took the fast path


def decode_page(entry_ids: Sequence[bytes], fields: Sequence[Fields]) -> DecodedPage:
    """Rows for the page's entries; an entry that cannot be one is listed with the reason."""
    candidates, documents = _documents(fields) if FAST_PATHS_ON else ([], [])
    blocks: list[RowBlock] = []
    taken: list[int] = []
    if candidates and (read := _read_fast(documents)) is not None:
        table, accepted = read
        taken = candidates if accepted is None else [candidates[i] for i in accepted]
        if len(taken) == len(fields):  # the usual page: every entry, in order
            blocks.append(RowBlock(table, list(entry_ids), list(fields)))
        else:
            taken_ids, taken_fields = [entry_ids[i] for i in taken], [fields[i] for i in taken]
            blocks.append(RowBlock(table, taken_ids, taken_fields))
    slow = [] if len(taken) == len(fields) else sorted(set(range(len(fields))) - set(taken))
    rows: list[EventRow] = []
    unreadable: list[tuple[int, UnreadableEvent]] = []
    for index in slow:
        try:
            rows.append(decode_entry(entry_ids[index], fields[index]))
        except UnreadableEvent as exc:
            unreadable.append((index, exc))
    if rows:
        blocks.append(RowBlock.from_rows(rows))
    return DecodedPage(RowBlock.concat(blocks), unreadable, len(taken))


def _documents(fields: Sequence[Fields]) -> tuple[list[int], list[bytes]]:
    """The entries whose document may go to the reader, and those documents (the reader
    gets them one a line).

    Each must start with ``{`` and end with ``}``. Then the reader's values line up with
    the documents: one that ends inside a value leaves the reader expecting ``,``, ``}``
    or ``]`` (or inside a string, where the line break is invalid), and it finds the next
    document's ``{``: an error. So a document yields one row or more, or the page fails;
    and ``_read_fast`` requires as many rows as documents. (A line break inside a
    document is whitespace to the reader, which gets the page as one block.)"""
    documents = [entry.get(b"data") for entry in fields]
    candidates = [
        index
        for index, data in enumerate(documents)
        if data is not None and data[:1] == b"{" and data[-1:] == b"}"
    ]
    if len(candidates) == len(documents):  # the usual page
        return candidates, documents  # type: ignore[return-value]
    return candidates, [documents[index] for index in candidates]  # type: ignore[misc]


def _read_fast(documents: list[bytes]) -> tuple[pa.Table, list[int] | None] | None:
    """The rows the fast path takes of the ``documents`` and their indices (None: all of
    them); None when the reader refuses the page."""
    try:
        buffer = b"\n".join(documents) + b"\n"
        buffer.decode()  # the contract refuses invalid UTF-8 anywhere, the reader does not
        read = pa_json.ReadOptions(use_threads=False, block_size=max(_MIN_BLOCK, len(buffer)))
        table = pa_json.read_json(pa.BufferReader(buffer), read_options=read, parse_options=_PARSE)
        if table.num_rows != len(documents):
            return None
        table = table.combine_chunks()
        properties = _properties(documents)
        accepted = _accepted(table)
        if properties.null_count:  # not an object of strings: the contract decides
            accepted = pc.and_(accepted, properties.is_valid())
        if accepted.false_count == 0:
            return _to_rows(table, properties), None
        indices = pc.indices_nonzero(accepted)
        return _to_rows(table.take(indices), properties.take(indices)), indices.to_pylist()
    except (UnicodeDecodeError, pa.ArrowException):
        return None


def _properties(documents: list[bytes]) -> pa.MapArray:
    """Each document's ``properties`` as the column's map, null where the contract must
    judge them (not an object of strings, or a document orjson cannot read).

    A document without a backslash (so without a ``\\u`` escape, which could spell a
    key) that holds no ``"properties"``, or holds it once as ``"properties":{}`` (what
    producers write when there are none), has none: unescaped, a key is the only place
    these bytes can name a field (inside a string a quote is escaped), and if it is a
    nested object's key the top level has none either. Two byte searches (~0.5 µs; a
    single byte is found with memchr, ``\\u`` cost more than both). The rest (with
    properties, or a backslash) is read whole by orjson (~2 µs)."""
    pairs: list[list[tuple[str, str]] | None] = []
    for document in documents:
        if _BACKSLASH not in document:
            at = document.find(_PROPERTIES_KEY)
            if at < 0 or (document.startswith(_NO_PROPERTIES, at)
                          and document.find(_PROPERTIES_KEY, at + 1) < 0):  # fmt: skip
                pairs.append([])
                continue
        try:
            value = orjson.loads(document).get("properties", _EMPTY)
        except (orjson.JSONDecodeError, AttributeError):
            value = None
        ok = type(value) is dict and all(type(v) is str for v in value.values())
        pairs.append(list(value.items()) if ok else None)
    return pa.array(pairs, PROPERTIES_TYPE)


def _accepted(table: pa.Table) -> pa.BooleanArray:
    """Per row: the fast path takes it (never null)."""
    column = table.column
    checks = [
        pc.equal(column("schema_version"), 1),
        pc.match_substring_regex(column("event_id"), _UUID),
        pc.is_valid(_moments(column("occurred_at"))),
        pc.is_in(column("status"), value_set=_STATUS),
        pc.is_in(column("cache"), value_set=_CACHE),
    ]
    checks += [_optional(column(name), _UUID) for name in ("project_id", "key_id")]
    checks += [pc.is_valid(column(name)) for name in _REQUIRED]
    checks += [_within(column(name), bound) for name, bound in _RANGES.items()]
    checks += [_fits_cost(column(name)) for name in _COSTS]
    return functools.reduce(pc.and_kleene, checks).fill_null(False).combine_chunks()


def _optional(strings: pa.ChunkedArray, pattern: str) -> pa.ChunkedArray:
    return pc.or_kleene(pc.is_null(strings), pc.match_substring_regex(strings, pattern))


def _within(integers: pa.ChunkedArray, bound: int) -> pa.ChunkedArray:
    return pc.and_kleene(pc.greater_equal(integers, 0), pc.less(integers, bound))


def _fits_cost(strings: pa.ChunkedArray) -> pa.ChunkedArray:
    """A decimal string that fits Decimal(38, 12) as it is (no rounding)."""
    scientific = pc.extract_regex(strings, _SCIENTIFIC_COST)
    power = pc.cast(pc.struct_field(scientific, "power"), _INT)
    power = pc.if_else(pc.equal(pc.struct_field(scientific, "sign"), "-"), pc.negate(power), power)
    places = pc.subtract(pc.utf8_length(pc.struct_field(scientific, "fraction")), power)
    fits = pc.and_kleene(pc.less_equal(places, _COST_PLACES), pc.less_equal(power, _COST_MAX_POWER))
    return pc.or_kleene(pc.match_substring_regex(strings, _PLAIN_COST), fits)


def _moments(strings: pa.ChunkedArray) -> pa.ChunkedArray:
    """The times in microseconds (UTC), null where not in the accepted form or outside
    the stored times (``_FIRST_MOMENT`` <= t < ``_END_OF_MOMENTS``).

    Raises ArrowInvalid for a well-formed impossible date (the page goes the slow way)."""
    shaped = pc.if_else(pc.match_substring_regex(strings, _TIME), strings, None)
    moments = pc.cast(shaped, _MOMENT)
    stored = pc.and_(pc.greater_equal(moments, _FIRST_MOMENT), pc.less(moments, _END_OF_MOMENTS))
    return pc.if_else(stored, moments, None)


def _to_rows(table: pa.Table, properties: pa.MapArray) -> pa.Table:
    """Checked rows in the request log's columns and types."""
    arrays = []
    for target in ARROW_SCHEMA:
        name = target.name
        if name == "properties":
            arrays.append(properties)
            continue
        values = table.column(name)
        if name in ("event_id", "project_id", "key_id"):
            values = _uuid_bytes(values.fill_null(_NIL_UUID))
        elif name == "occurred_at":  # the contract's row floors to milliseconds
            values = pc.floor_temporal(_moments(values), unit="millisecond")
        elif name in _EMPTY_IF_NULL:
            values = values.fill_null("")
        elif name == "unpriced":  # the contract's None (absent or null) is stored false
            values = values.fill_null(False)
        arrays.append(pc.cast(values, target.type))
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def _uuid_bytes(strings: pa.ChunkedArray) -> pa.Array:
    """Checked ``8-4-4-4-12`` UUID strings as 16 bytes each, converted in one pass in C."""
    array = strings.combine_chunks()
    offsets = memoryview(array.buffers()[1]).cast("i")  # int32, as the string type has
    first, last = offsets[array.offset], offsets[array.offset + len(array)]
    text = array.buffers()[2][first:last].to_pybytes()
    raw = binascii.unhexlify(text.replace(b"-", b""))
    if len(raw) != 16 * len(array):  # cannot happen after the checks; never misalign ids
        raise pa.ArrowInvalid("UUID column is not 36 characters a row")
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(array), [None, pa.py_buffer(raw)]
    )
