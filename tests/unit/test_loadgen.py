"""The bench's load tool against a tiny local HTTP/1.1 server started by the test."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.bench.loadgen import Target, run_closed_loop, run_open_loop, summarise
from tests.bench.stats import distribution, percentile
from tests.support.processes import free_port
from watchllm_shared.cli.deployment.http1 import Record, ResponseParser
from watchllm_shared.cli.deployment.pool import MAX_IDLE_SECONDS, ConnectionPool

pytestmark = pytest.mark.unit

SSE_CHUNKS = [b"data: a\n\ndata: b\n", b"\ndata: [DONE]\n\n"]  # an event split across chunks
JSON = b'{"ok":true}'


def _chunked(parts: list[bytes]) -> list[bytes]:
    return [f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in parts] + [
        b"0\r\nX-T: 1\r\n\r\n"
    ]


async def _respond(path: bytes, writer: asyncio.StreamWriter) -> bool:
    """Answer one request; False when the connection must close afterwards."""
    if path == b"/sse":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        for piece in _chunked(SSE_CHUNKS):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.005)
        return True
    if path == b"/close":
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + JSON)
        return False
    if path == b"/slow":
        await asyncio.sleep(0.02)
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(JSON)}\r\n\r\n".encode()
    writer.write(head + JSON)
    return True


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":")[1]))
            if not await _respond(head.split(b" ")[1], writer):
                break
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture
async def server_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def _target(port: int, path: str) -> Target:
    return Target("127.0.0.1", port, path, b'{"x":1}', headers={"Content-Type": "application/json"})


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    summary = distribution([0.004, 0.001, 0.002, 0.003])  # seconds in, ms out
    assert summary == pytest.approx({"p50": 2.5, "p90": 3.7, "p99": 3.97, "max": 4.0, "mean": 2.5})
    assert distribution([]) is None


def test_parser_reads_chunked_sse_one_byte_at_a_time() -> None:
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
        _chunked(SSE_CHUNKS)
    )
    parser = ResponseParser(keep_body=True)
    done = [parser.feed(response[i : i + 1], float(i)) for i in range(len(response))]
    assert done == [False] * (len(response) - 1) + [True]
    assert parser.status == 200
    assert b"".join(parser.parts) == b"".join(SSE_CHUNKS)
    assert parser.events == 3
    assert parser.first_byte == float(response.index(b"data: a"))


async def test_open_loop_honours_the_rate_and_records_latencies(server_port: int) -> None:
    started = time.perf_counter()
    run = await run_open_loop(_target(server_port, "/json"), rate=200, duration=1.0)
    elapsed = time.perf_counter() - started
    summary = summarise([run])
    assert summary.requests == 200 and summary.ok == 200 and summary.errors == 0
    gaps = [b.scheduled - a.scheduled for a, b in zip(run.records, run.records[1:], strict=False)]
    assert all(gap == pytest.approx(0.005) for gap in gaps)
    assert 0.9 < run.records[-1].sent - run.records[0].sent < 1.3  # type: ignore[operator]
    assert elapsed < 3.0
    for record in run.records:
        assert record.status == 200 and record.sent is not None and record.done is not None
        assert record.scheduled <= record.done and record.sent <= record.done
    assert summary.latency_ms and summary.service_ms and summary.send_lag_ms
    assert summary.latency_ms["p50"] >= summary.service_ms["p50"] > 0
    assert summary.throughput_rps > 150


async def test_streams_are_parsed_and_ttfb_recorded(server_port: int) -> None:
    run = await run_open_loop(_target(server_port, "/sse"), rate=20, duration=0.25, keep_body=True)
    summary = summarise([run])
    assert summary.ok == 5 and summary.sse_events == 15
    for record in run.records:
        assert record.body == b"".join(SSE_CHUNKS)
        assert record.first_byte is not None and record.done is not None
        assert record.scheduled < record.first_byte < record.done  # ~3 chunks of 5 ms apart
    assert summary.ttfb_ms and summary.latency_ms
    assert summary.ttfb_ms["p50"] < summary.latency_ms["p50"]


async def test_waiting_for_a_connection_counts_in_latency(server_port: int) -> None:
    """One connection, 20 ms answers, 100 req/s: later requests queue and wait."""
    run = await run_open_loop(
        _target(server_port, "/slow"), rate=100, duration=0.3, max_connections=1, warm_connections=1
    )
    summary = summarise([run])
    assert summary.ok == 30 and summary.connections == 1
    assert summary.queued_at_cap > 10 and summary.late_sends > 10
    assert summary.latency_ms and summary.service_ms
    assert summary.latency_ms["max"] > 200 > 3 * summary.service_ms["max"]


async def test_closed_loop_close_delimited_and_refused(server_port: int) -> None:
    closed = summarise([await run_closed_loop(_target(server_port, "/json"), 4, 0.3)])
    assert closed.ok > 20 and closed.errors == 0 and closed.connections == 4
    until_close = summarise([await run_open_loop(_target(server_port, "/close"), 50, 0.1)])
    assert until_close.ok == 5 and until_close.errors == 0
    refused = summarise([await run_open_loop(_target(free_port(), "/json"), 50, 0.1)])
    assert refused.ok == 0 and refused.errors == 5
    assert set(refused.error_kinds) == {"connect_ConnectionRefusedError"}


def test_parser_keeps_the_asked_headers_and_the_end_of_the_body() -> None:
    response = (b"HTTP/1.1 200 OK\r\nX-Request-Id: req_1\r\nx-watchllm-cache:  hit \r\n"
                b"Content-Length: 40\r\n\r\n" + b"x" * 26 + b"data: [DONE]\n\n")  # fmt: skip
    parser = ResponseParser(capture=(b"x-request-id", b"x-watchllm-cache", b"x-absent"))
    assert parser.feed(response, 1.0)
    assert parser.headers == {b"x-request-id": b"req_1", b"x-watchllm-cache": b"hit"}
    assert parser.tail.endswith(b"xxdata: [DONE]\n\n") and len(parser.tail) == 32


async def test_records_carry_their_own_request_and_stale_connections_are_not_reused(
    server_port: int,
) -> None:
    """``watchllm loadtest`` sends a different body each time; a connection idle longer
    than the pool allows is closed rather than written to (the server may be closing it)."""
    json_target = _target(server_port, "/json")
    pool = ConnectionPool(json_target, max_connections=4)
    done: list[Record] = []

    async def one(record: Record) -> Record:
        record.on_done = done.append
        pool.submit(record)
        assert await pool.wait_idle(5.0)
        return record

    streamed = await one(Record(0.0, payload=_target(server_port, "/sse").payload()))
    assert streamed.status == 200 and streamed.events == 3 and pool.opened == 1
    assert (await one(Record(0.0))).status == 200 and pool.opened == 1  # reused
    pool._idle[-1].idle_since -= MAX_IDLE_SECONDS + 1  # as if idle for too long
    assert (await one(Record(0.0))).status == 200 and pool.opened == 2
    assert len(done) == 3
    await pool.close()
