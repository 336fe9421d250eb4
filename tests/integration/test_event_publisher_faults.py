"""The gateway's event publisher (``StreamPublisher``) when Redis fails, against real
servers of the test's own on loopback: a shutdown while Redis is down counts and logs
every event it could not write, within one deadline for all publishers, a shutdown
during a backoff tries once more, and a
Redis refusing some of a batch's XADDs (``maxmemory`` with ``noeviction``) gets each
event exactly once after it recovers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from tests.support.processes import free_port
from watchllm_gateway.events import PublisherMetrics, StreamPublisher, close_all
from watchllm_shared.cli.embedded import EmbeddedRedis
from watchllm_shared.redis_io import create_redis
from watchllm_shared.redis_packed import PackedCommands

pytestmark = pytest.mark.integration

STREAM = "test:events"


class Number:
    """Stands in for a prometheus Counter or Gauge."""

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def set(self, value: float) -> None:
        self.value = value


def new_metrics() -> PublisherMetrics:
    return PublisherMetrics(published=Number(), dropped=Number(), buffered=Number(),
                            errors=Number())  # fmt: skip


@dataclass
class Server:
    """A throwaway embedded Valkey of the test's own, and a client of it."""

    valkey: EmbeddedRedis
    port: int
    client: redis.Redis

    def stop(self) -> None:
        self.client.close()
        self.valkey.stop()


PASSWORD = "publisher-faults-password"  # known before a server starts (the URL a client is given)


def url_at(port: int) -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{port}/0"


def start_server(port: int, data_dir: Path) -> Server:
    valkey = EmbeddedRedis(data_dir, port=port, password=PASSWORD)
    valkey.start()
    return Server(valkey, port, redis.Redis.from_url(valkey.url))


def request_ids(client: redis.Redis) -> list[bytes]:
    """The ``request_id`` of every entry in the stream, in stream order."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(STREAM)  # type: ignore[assignment]
    return [fields[b"request_id"] for _, fields in entries]


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts go here; all are stopped after it."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``check()`` is true (or fail after ``within`` seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def until_wall_clock(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Wait until ``check()`` by the wall clock, for tests that stop the loop's clock (no
    timer fires then, not even a sleep's; ``within`` only bounds a failure)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0)


async def test_shutdown_while_redis_is_down_counts_and_logs_every_unwritten_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="watchllm_gateway.events")
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)
    commands = PackedCommands(client)
    metrics = new_metrics()
    publisher = StreamPublisher(commands, metrics, buffer_size=100, stream=STREAM, maxlen=1000)
    publisher.start()
    for n in range(3):
        publisher.publish({"request_id": str(n)})
    await eventually(lambda: metrics.errors.value >= 1)  # the batch is in flight
    await publisher.close(flush_seconds=0.5)
    await commands.aclose()
    await client.aclose()

    assert metrics.published.value == 0
    assert metrics.dropped.value == 3
    assert metrics.buffered.value == 0
    shutdown = [r for r in caplog.records if "shutdown" in r.getMessage()]
    assert len(shutdown) == 1, [r.getMessage() for r in caplog.records]
    assert shutdown[0].levelno == logging.ERROR
    assert "3 entries not written" in shutdown[0].getMessage()


async def test_publishers_flush_together_under_one_deadline_and_report_what_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gateway's two publishers with Redis gone at shutdown: they used to flush one
    after the other (5 s each), past a supervisor's 10 s grace, and be killed with
    nothing logged. Now both share one deadline, and each reports its loss."""
    caplog.set_level(logging.INFO, logger="watchllm_gateway.events")
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)
    commands = PackedCommands(client)
    events_metrics, stores_metrics = new_metrics(), new_metrics()
    events = StreamPublisher(commands, events_metrics, 100, stream=STREAM, maxlen=1000)
    stores = StreamPublisher(commands, stores_metrics, 100, stream="test:stores", maxlen=1000)
    for publisher, count in ((events, 2), (stores, 3)):
        publisher.start()
        for n in range(count):
            publisher.publish({"request_id": str(n)})
    await eventually(lambda: events_metrics.errors.value >= 1 and stores_metrics.errors.value >= 1)
    started = time.monotonic()
    await close_all([events, stores], flush_seconds=2.0)
    took = time.monotonic() - started
    events.publish({"request_id": "late"})  # a request that finished after the flush
    await commands.aclose()
    await client.aclose()

    assert took < 3.5, f"the flushes took {took:.2f} s: not one 2 s deadline for both"
    assert (events_metrics.dropped.value, stores_metrics.dropped.value) == (3, 3)
    lines = [r.getMessage() for r in caplog.records if "shutdown" in r.getMessage()]
    assert any(line.startswith(f"shutdown: 2 entries not written to {STREAM}") for line in lines)
    assert any(line.startswith("shutdown: 3 entries not written to test:stores") for line in lines)
    assert any("came after the flush" in line for line in lines), lines
    unwritten = [line for line in lines if "not written" in line]
    assert all("(Redis: Error" in line for line in unwritten), unwritten  # what failed


async def test_an_idle_publisher_writes_at_once_not_on_a_timer(
    tmp_path: Path, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until its XADD is sent an event lives only in memory, where a SIGKILL loses it.
    An idle publisher must send it at once: with the event loop's clock frozen no timer
    can fire, and the event still reaches Redis (it used to wait 5 ms for company)."""
    server = start_server(free_port(), tmp_path / "redis")
    servers.append(server)
    client = create_redis(url_at(server.port), socket_timeout=False)
    commands = PackedCommands(client)
    metrics = new_metrics()
    publisher = StreamPublisher(commands, metrics, buffer_size=100, stream=STREAM, maxlen=1000)
    publisher.start()
    publisher.publish({"request_id": "warm-up"})  # opens the connection
    await eventually(lambda: metrics.published.value == 1)
    loop = asyncio.get_running_loop()
    frozen = loop.time()
    monkeypatch.setattr(loop, "time", lambda: frozen)
    publisher.publish({"request_id": "answered"})
    deadline = time.monotonic() + 10  # wall clock: the loop's is frozen
    while metrics.published.value < 2:
        assert time.monotonic() < deadline, "the event waited for a timer"
        await asyncio.sleep(0)
    monkeypatch.undo()
    await publisher.close()
    await commands.aclose()
    await client.aclose()
    assert request_ids(server.client) == [b"warm-up", b"answered"]


async def test_the_buffered_gauge_counts_the_batch_in_flight() -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)
    commands = PackedCommands(client)
    metrics = new_metrics()
    publisher = StreamPublisher(commands, metrics, buffer_size=100, stream=STREAM, maxlen=1000)
    publisher.start()
    for n in range(3):
        publisher.publish({"request_id": str(n)})
    await eventually(lambda: metrics.errors.value >= 1)  # 3 in flight, none queued
    assert metrics.buffered.value == 3
    publisher.publish({"request_id": "3"})
    publisher.publish({"request_id": "4"})
    assert metrics.buffered.value == 5
    await publisher.close(flush_seconds=0.2)
    await commands.aclose()
    await client.aclose()
    assert metrics.dropped.value == 5
    assert metrics.buffered.value == 0


async def test_shutdown_during_a_long_backoff_tries_once_more(
    tmp_path: Path, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis comes back while the writer waits out a backoff: close does not wait for
    the backoff to end, it writes at once. The event loop's clock is stopped before the
    first try, so the backoff that follows it cannot end by itself, however long
    Valkey takes to start: only close can end it. (It was a race: Valkey's start
    against a 1.6 s backoff, and a timed close.)"""
    port = free_port()
    client = create_redis(url_at(port), timeout_seconds=0.5)
    commands = PackedCommands(client)
    metrics = new_metrics()
    publisher = StreamPublisher(commands, metrics, buffer_size=100, stream=STREAM, maxlen=1000)
    loop = asyncio.get_running_loop()
    frozen = loop.time()
    monkeypatch.setattr(loop, "time", lambda: frozen)
    publisher.start()
    for n in range(3):
        publisher.publish({"request_id": str(n)})
    await until_wall_clock(lambda: metrics.errors.value >= 1, "the first try failed")
    server = start_server(port, tmp_path / "redis")
    servers.append(server)
    closing = asyncio.create_task(publisher.close(flush_seconds=0.5))
    await until_wall_clock(closing.done, "close ended the backoff")
    await closing
    monkeypatch.undo()
    await commands.aclose()
    await client.aclose()

    assert metrics.errors.value == 1  # the first try; then the one close asked for
    assert metrics.published.value == 3
    assert metrics.dropped.value == 0
    assert sorted(request_ids(server.client)) == [b"0", b"1", b"2"]


async def test_a_batch_partly_refused_at_maxmemory_is_written_exactly_once(
    tmp_path: Path, servers: list[Server]
) -> None:
    """Redis at ``maxmemory`` (``noeviction``) part-way through a pipelined batch: the
    XADDs before the limit run, the rest fail with OOM. Once memory is freed every event
    is in the stream exactly once: only the refused XADDs were sent again."""
    server = start_server(free_port(), tmp_path / "redis")
    servers.append(server)
    used = int(server.client.info("memory")["used_memory"])
    server.client.config_set("maxmemory-policy", "noeviction")
    server.client.config_set("maxmemory", str(used + 300_000))
    client: aioredis.Redis = create_redis(url_at(server.port),
                                          socket_timeout=False)  # fmt: skip
    commands = PackedCommands(client)
    metrics = new_metrics()
    events = 500
    publisher = StreamPublisher(
        commands, metrics, buffer_size=10_000, stream=STREAM, maxlen=100_000
    )
    publisher.start()
    for n in range(events):
        publisher.publish({"request_id": f"event-{n}", "pad": "x" * 2000})
    await eventually(lambda: metrics.errors.value >= 1)
    written_at_maxmemory = int(server.client.xlen(STREAM))
    assert 0 < written_at_maxmemory < events, "the fault did not refuse part of the batch"
    published_at_maxmemory = metrics.published.value
    buffered_at_maxmemory = metrics.buffered.value

    server.client.config_set("maxmemory", "0")  # the operator frees memory
    await eventually(lambda: metrics.published.value >= events)
    await publisher.close(flush_seconds=5)
    await commands.aclose()
    await client.aclose()

    ids = request_ids(server.client)
    assert len(ids) == events, f"{len(ids) - len(set(ids))} written twice"
    assert sorted(ids) == sorted(f"event-{n}".encode() for n in range(events))
    assert metrics.published.value == events
    assert metrics.dropped.value == 0
    assert published_at_maxmemory == written_at_maxmemory
    assert buffered_at_maxmemory == events - written_at_maxmemory
    assert metrics.buffered.value == 0
