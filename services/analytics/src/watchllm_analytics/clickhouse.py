"""ClickHouse clients and the one place its errors are sorted.

The same code talks to a server (``http://…:8123``) and to chdb in this process
(``chdb:///abs/path``) through clickhouse-connect. chdb lets one process open a path,
so in embedded mode this service is the only reader and writer of that path.

Every clickhouse-connect error is translated here into one of two kinds, because the
pipeline's policy depends only on that:

- :class:`RowsRejected`: ClickHouse (or the client encoding the rows) refused the data
  itself; retrying the same rows cannot succeed. The writer isolates the offending row.
- :class:`ClickHouseUnavailable`: anything else (unreachable, timeout, overloaded,
  table missing, a bug of ours). Nothing is acknowledged; the pipeline backs off and
  retries the same batch, and the entries stay pending in Redis meanwhile.

Two misconfigurations are neither, and the service refuses to start: a chdb path locked
by another process (:class:`StoreLocked`), and a chdb DSN where chdb is not installed
(:class:`EmbeddedEngineMissing`: it is the ``embedded`` extra, which the image leaves
out). chdb is imported only when a chdb DSN is opened.
"""

from __future__ import annotations

import importlib
import re
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DataError

T = TypeVar("T")

# ClickHouse error codes that mean "this data cannot go into this table".
_DATA_ERROR_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  # ATTEMPT_TO_READ_AFTER_EOF (truncated native block)
    38,  # CANNOT_PARSE_DATE
    41,  # CANNOT_PARSE_DATETIME
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    72,  # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    407,  # DECIMAL_OVERFLOW
    469,  # VIOLATED_CONSTRAINT
})  # fmt: skip
# Raised by clickhouse-connect while encoding rows, before anything is sent.
_ENCODING_ERRORS = (ValueError, TypeError, OverflowError, struct.error)
_NEEDS_NO_ESCAPING = re.compile(r"[0-9A-Za-z,.:_-]*").fullmatch


class ClickHouseUnavailable(Exception):
    """ClickHouse cannot take or answer this now; try again later."""


class RowsRejected(Exception):
    """ClickHouse refuses these rows; retrying them as they are cannot succeed."""


class StoreLocked(Exception):
    """Another process holds the chdb path."""


class EmbeddedEngineMissing(Exception):
    """A chdb DSN, and chdb (the ``embedded`` extra) is not installed."""


class Verbatim:
    """A query parameter clickhouse-connect passes on as ``str(value)``, without escaping
    it character by character (~0.3 µs a character in Python: 0.1 s for 10,000 UUIDs).
    Only for text that needs no escaping, which the constructor checks (in C)."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        if not _NEEDS_NO_ESCAPING(text):
            raise ValueError("Verbatim takes letters, digits and , . : _ - only")
        self._text = text

    def __str__(self) -> str:
        return self._text


def open_client(dsn: str, database: str | None, timeout_seconds: float = 30.0) -> Client:
    network: dict[str, Any] = {}
    if dsn.startswith("chdb:"):
        require_chdb(dsn)
    else:
        network = {
            "connect_timeout": min(timeout_seconds, 10.0),
            "send_receive_timeout": timeout_seconds,
            "autogenerate_session_id": False,  # concurrent queries on one client
        }
    try:
        return clickhouse_connect.get_client(dsn=dsn, database=database or "", **network)
    except ClickHouseError as exc:
        if "Cannot lock file" in str(exc) or "already initialized with path" in str(exc):
            raise StoreLocked(f"{redact_dsn(dsn)} is in use by another process: {exc}") from exc
        raise ClickHouseUnavailable(f"cannot open {redact_dsn(dsn)}: {exc}") from exc


def require_chdb(dsn: str) -> None:
    """Import chdb (only ever for a chdb DSN), or say what to install or set instead of
    clickhouse-connect's ImportError, which names a pip extra of its own."""
    try:
        importlib.import_module("chdb")
    except ImportError as exc:
        raise EmbeddedEngineMissing(
            f"{redact_dsn(dsn)} is embedded ClickHouse (WATCHLLM_CLICKHOUSE_URL unset or"
            f" chdb://), and chdb is not installed ({exc}). Install the embedded extra"
            " (pip install 'watchllm-analytics[embedded]'), or set WATCHLLM_CLICKHOUSE_URL"
            " to a ClickHouse server (http://user:password@host:8123)."
        ) from None


def create_database(dsn: str, database: str) -> None:
    """``CREATE DATABASE IF NOT EXISTS``; ``database`` is a checked identifier (settings)."""
    client = open_client(dsn, None)
    try:
        call(lambda: client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`"))
    finally:
        client.close()


def call(operation: Callable[[], T]) -> T:
    """Run a ClickHouse operation, translating its errors (see the module docstring)."""
    try:
        return operation()
    except ClickHouseError as exc:
        if isinstance(exc, DataError) or getattr(exc, "code", None) in _DATA_ERROR_CODES:
            raise RowsRejected(str(exc)) from exc
        raise ClickHouseUnavailable(str(exc)) from exc
    except _ENCODING_ERRORS as exc:
        raise RowsRejected(f"{type(exc).__name__}: {exc}") from exc
    except OSError as exc:  # sockets, and chdb's temporary insert files
        raise ClickHouseUnavailable(f"{type(exc).__name__}: {exc}") from exc


def ping(client: Client) -> bool:
    try:
        call(lambda: client.command("SELECT 1"))
    except ClickHouseUnavailable:
        return False
    return True


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for logs."""
    scheme, sep, rest = dsn.partition("://")
    if "@" not in rest:
        return dsn
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:…@{host}"
