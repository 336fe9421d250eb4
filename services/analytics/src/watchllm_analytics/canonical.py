"""The fast way from an event's JSON to a row, for documents in the canonical form.

The contract's codec (pydantic, ``RequestCompleted.from_stream_fields``) and building a
row from the model cost ~15 µs an event here (best of 60 runs, on a busy machine), most
of the reading thread's budget at 50,000 events/s. But every producer writes events with
that same model's encoder (``to_stream_fields``), so nearly every document has one
shape: UUIDs as 36-character strings, times as UTC ISO 8601 ending in ``Z``, costs as
decimal strings, integers and floats as JSON numbers of their own kind, properties as
an object of strings.
:func:`canonical_values` reads exactly that shape with orjson and a few checks (~10 µs,
row included) and answers ``None`` for anything else, so the contract stays the judge:

    canonical_values(data) is not None
        ⇒ the contract accepts data, and the row built from it has exactly these values.

``rows.decode_entry`` hands every ``None`` to the contract, which reads what it can (any
lax form pydantic accepts) and refuses the rest with its own message. A document is
never refused here, only passed on; ``tests/analytics/test_canonical.py`` checks the
implication on generated events and on near-miss shapes.

The times the request log holds faithfully, ``FIRST_STORED_TIME <= occurred_at <
END_OF_STORED_TIME`` (1970-01-01T00:00:00Z up to, not including, 2106-02-07T06:28:16Z),
are defined here for both fast paths and ``rows``, which refuses the rest (its docstring
says why); a time outside them is passed on like any other doubt.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from watchllm_shared.contracts import CacheOutcome, RequestCompleted, RequestStatus

NIL_UUID_BYTES = bytes(16)
_STATUS = frozenset(status.value for status in RequestStatus)
_CACHE = frozenset(outcome.value for outcome in CacheOutcome)
_UINT8, _UINT16, _UINT32 = 2**8, 2**16, 2**32
# A decimal string that fits Decimal(38, 12) as it is (no rounding needed) …
_PLAIN_COST = re.compile(r"-?[0-9]{1,26}(?:\.[0-9]{1,12})?").fullmatch
# … or one in str(Decimal)'s scientific form (small costs: '1.5E-7'), checked further.
_SCIENTIFIC_COST = re.compile(r"-?[0-9](?:\.([0-9]{1,30}))?E([-+][0-9]{1,2})").fullmatch
_COST_PLACES = 12
_COST_MAX_POWER = 25  # 26 integer digits
# occurred_at: the range of ClickHouse's DateTime, seconds since 1970 in 32 bits, which
# the table's hourly projection and queries (toStartOfHour) compute in (``rows``).
FIRST_STORED_TIME = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_STORED_TIME = datetime.fromtimestamp(2**32, UTC)  # 2106-02-07T06:28:16Z, excluded
# Contract fields the request log has a column for (read below and by ``page_decoder``).
# A contract field without one that is an optional string is still type-checked by both
# fast paths (the contract refuses a number there); one of any other kind turns them off
# (every document goes to the contract) rather than accept what the contract refuses.
STORED_FIELDS = frozenset({
    "schema_version", "event_id", "occurred_at", "request_id", "project_id", "key_id",
    "model", "provider", "endpoint", "http_status", "status", "error_type", "cache",
    "cache_similarity", "stream", "prompt_tokens", "completion_tokens", "cost_usd",
    "cost_saved_usd", "latency_ms", "upstream_latency_ms", "ttfb_ms", "trace_id",
    "upstream_attempts", "cache_key", "unpriced", "deployment", "fallback_model",
    "properties", "end_user",
})  # fmt: skip
UNSTORED_STRINGS = tuple(
    name
    for name, info in RequestCompleted.model_fields.items()
    if name not in STORED_FIELDS and info.annotation == (str | None)
)
FAST_PATHS_ON = set(RequestCompleted.model_fields) <= STORED_FIELDS | set(UNSTORED_STRINGS)


_NO_PROPERTIES: dict[str, str] = {}  # absent: the contract's default (never changed)


class _NotCanonical(Exception):
    pass


def canonical_values(data: bytes) -> tuple[Any, ...] | None:
    """The row's values in ``rows.COLUMNS`` order, or None: let the contract decide."""
    if not FAST_PATHS_ON:
        return None
    try:
        doc = orjson.loads(data)
        if type(doc) is not dict:
            return None
        for name in UNSTORED_STRINGS:
            if (value := doc.get(name)) is not None and type(value) is not str:
                return None
        return _values(doc)
    except (orjson.JSONDecodeError, _NotCanonical, KeyError, TypeError, ValueError):
        return None


def _values(doc: dict[str, Any]) -> tuple[Any, ...]:
    get = doc.get
    schema_version = get("schema_version", 1)
    request_id, endpoint, http_status = doc["request_id"], doc["endpoint"], doc["http_status"]
    status, cache, stream = doc["status"], get("cache", "bypass"), get("stream", False)
    prompt, completion = get("prompt_tokens", 0), get("completion_tokens", 0)
    attempts, latency = get("upstream_attempts", 0), doc["latency_ms"]
    similarity, upstream, ttfb = get("cache_similarity"), get("upstream_latency_ms"), get("ttfb_ms")
    model, provider = get("model"), get("provider")
    error_type, trace_id, cache_key = get("error_type"), get("trace_id"), get("cache_key")
    unpriced, deployment, fallback = get("unpriced"), get("deployment"), get("fallback_model")
    properties, end_user = get("properties", _NO_PROPERTIES), get("end_user")
    if not (
        type(schema_version) is int and schema_version == 1
        and type(request_id) is str and type(endpoint) is str
        and type(http_status) is int and 0 <= http_status < _UINT16
        and status in _STATUS and cache in _CACHE and type(stream) is bool
        and type(prompt) is int and 0 <= prompt < _UINT32
        and type(completion) is int and 0 <= completion < _UINT32
        and type(attempts) is int and 0 <= attempts < _UINT8
        and type(latency) is float
        and (similarity is None or type(similarity) is float)
        and (upstream is None or type(upstream) is float)
        and (ttfb is None or type(ttfb) is float)
        and (model is None or type(model) is str) and (provider is None or type(provider) is str)
        and (error_type is None or type(error_type) is str)
        and (trace_id is None or type(trace_id) is str)
        and (cache_key is None or type(cache_key) is str)
        and (unpriced is None or type(unpriced) is bool)
        and (deployment is None or type(deployment) is str)
        and (fallback is None or type(fallback) is str)
        and (end_user is None or type(end_user) is str)
        and type(properties) is dict and all(type(v) is str for v in properties.values())
    ):  # fmt: skip
        raise _NotCanonical
    return (
        _uuid(doc["event_id"]), _utc_time(doc["occurred_at"]), 1, request_id,
        _optional_uuid(get("project_id")), _optional_uuid(get("key_id")), model or "",
        provider or "", endpoint, http_status, status, error_type or "", cache, similarity,
        stream, prompt, completion, _cost(get("cost_usd", "0")), _cost(get("cost_saved_usd", "0")),
        latency, upstream, ttfb, trace_id or "", attempts, cache_key or "", unpriced is True,
        deployment or "", fallback or "", list(properties.items()), end_user or "",
    )  # fmt: skip


def _uuid(value: Any) -> bytes:
    """``8-4-4-4-12`` hex digits (either case) → the 16 bytes."""
    if type(value) is str and len(value) == 36:
        if value[8] == value[13] == value[18] == value[23] == "-":
            raw = bytes.fromhex(value.replace("-", ""))  # whitespace would leave < 16 bytes
            if len(raw) == 16:
                return raw
    raise _NotCanonical


def _optional_uuid(value: Any) -> bytes:
    return NIL_UUID_BYTES if value is None else _uuid(value)


def _utc_time(value: Any) -> datetime:
    """``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z`` only (what the contract writes for UTC times),
    within the stored times (the contract path refuses the others, with the reason)."""
    if (
        type(value) is str and 20 <= len(value) <= 27 and value[-1] == "Z" and value.isascii()
        and value[4] == value[7] == "-" and value[10] == "T" and value[13] == value[16] == ":"
        and (len(value) == 20 or (value[19] == "." and value[20:-1].isdigit()))
    ):  # fmt: skip
        moment = datetime.fromisoformat(value)
        if FIRST_STORED_TIME <= moment < END_OF_STORED_TIME:
            return moment
    raise _NotCanonical


def _cost(value: Any) -> str:
    """A decimal string that fits Decimal(38, 12) without rounding, as it is (rows carry
    costs as strings; Arrow parses them, in C++)."""
    if type(value) is str:
        if _PLAIN_COST(value):
            return value
        if match := _SCIENTIFIC_COST(value):
            fraction, power = match.group(1) or "", int(match.group(2))
            # one digit before the point: places = fraction digits - power
            if len(fraction) - power <= _COST_PLACES and power <= _COST_MAX_POWER:
                return value
    raise _NotCanonical
