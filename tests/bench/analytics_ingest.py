"""The ingestion part of the analytics bench: events/s from XADD to rows queryable.

Two measurements, each repeated (medians reported, every run kept in the JSON):

- live: the service runs (warmed up by a first small batch), then N events are XADDed
  as fast as one publisher can while the service consumes. Rate = N / (first XADD →
  all N counted by ``count()``). Publishers: ``redis-py`` (pipelines of 1,000, as the
  gateway publishes; ~10 µs of this process's CPU an event, taken from the same two
  cores the service needs) or ``pre-encoded`` (the XADD commands encoded before the
  clock starts and written to a socket: Redis does the same work, the publisher ~1 µs).
- backlog: N events wait in the stream, then the service starts and drains them; the
  rate is taken from its first stored row to the last (start-up excluded), so it is the
  consumer's own sustained rate with no publisher competing for the two cores.

"All N stored" is seen without loading the service: the group has nothing undelivered
and nothing pending (entries are acknowledged only after their insert), then one
``count()`` through the service's query API must show every row; "done" is when that
answer arrives. Each run also records the CPU it cost per event: the service process,
the Redis server (INFO cpu) and this process (the publisher, and the polling).
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import hiredis
import redis

from tests.analytics.conftest import make_event
from tests.bench import profiling
from tests.bench.procstat import cpu_seconds
from tests.support.processes import ServiceProcess

PROJECTS = [uuid.UUID(f"00000000-0000-4000-8000-{i:012x}") for i in range(200)]
_POLL_SECONDS = 0.01
_WARM_UP_EVENTS = 1_000


class IngestBench(Protocol):
    """What the ingestion runs need from the bench (``analytics_bench.Bench``)."""

    stream: str
    redis: redis.Redis

    def start(self) -> ServiceProcess: ...
    def stop(self) -> None: ...
    def publish(self, payloads: list[dict[str, bytes]], chunk: int = 1000) -> None: ...
    def query(self, name: str, params: dict[str, Any]) -> dict[str, Any]: ...
    def metrics(self) -> dict[str, float]: ...


class Ingestion:
    def __init__(self, bench: IngestBench, events: int, publisher: str = "redis-py") -> None:
        self.bench = bench
        self.events = events
        self.publisher = publisher
        self.stored = 0  # rows the bench has had stored so far, over all runs
        self.since = datetime.now(UTC) - timedelta(hours=1)

    def payloads(self, count: int) -> list[dict[str, bytes]]:
        return [make_event(PROJECTS[i % 200]).to_stream_fields() for i in range(count)]

    def live(self) -> dict[str, Any]:
        payloads = self.payloads(self.events)  # built before the clock starts
        publish: Callable[[list[dict[str, bytes]]], None] = self.bench.publish
        if self.publisher == "pre-encoded":
            publish = _PreEncoded(self.bench.redis, self.bench.stream, payloads).send
        service = self.bench.start()
        self.bench.publish(self.payloads(_WARM_UP_EVENTS))
        self._wait_stored(_WARM_UP_EVENTS)
        cpu = _CpuMeter(self.bench.redis, service.process.pid)
        started = time.monotonic()
        publish(payloads)
        published = time.monotonic()
        done = self._wait_stored(self.events)
        costs = cpu.per_event(self.events)
        writes = self._writes()
        self.bench.stop()
        return {"rate_per_s": self.events / (done - started),
                "publish_rate_per_s": self.events / (published - started),
                "seconds": done - started, "cpu_us_per_event": costs, "writes": writes}  # fmt: skip

    def backlog(self, profile_dir: Path | None = None) -> dict[str, Any]:
        self.bench.publish(self.payloads(self.events))  # the service is stopped
        acked_before = self._group()[2]
        service = self.bench.start()
        ready = time.monotonic()
        cpu = _CpuMeter(self.bench.redis, service.process.pid)
        first, pending_at_first = self._wait_first_stored(acked_before)
        profiler = _Profiler(service.process.pid, profile_dir) if profile_dir else None
        done = self._wait_stored(self.events)
        costs = cpu.per_event(self.events)
        writes = self._writes()
        self.bench.stop()
        result = {"rate_per_s": pending_at_first / (done - first),
                  "from_ready_rate_per_s": self.events / (done - ready),
                  "seconds": done - first, "cpu_us_per_event": costs, "writes": writes}  # fmt: skip
        if profiler is not None:
            result["profile"] = profiler.result()
        return result

    def _writes(self) -> dict[str, float]:
        """The service's batches: how many, their mean size, and the writer's time per row
        (check + insert, in its thread): if that is close to 1/rate, storing is the limit."""
        m = self.bench.metrics()
        batches, rows = (
            m["watchllm_analytics_batch_rows_count"],
            m["watchllm_analytics_batch_rows_sum"],
        )
        seconds = m["watchllm_analytics_insert_seconds_sum"]
        return {"batches": batches, "mean_rows": rows / batches if batches else 0.0,
                "write_us_per_row": seconds / rows * 1e6 if rows else 0.0}  # fmt: skip

    def _wait_first_stored(self, acked_before: int) -> tuple[float, int]:
        """When the first rows are acknowledged, and how many entries were left then."""
        deadline = time.monotonic() + 120
        while True:
            undelivered, pending, acked = self._group()
            if acked > acked_before:
                return time.monotonic(), undelivered + pending
            assert time.monotonic() < deadline, "nothing stored after 120 s"
            time.sleep(_POLL_SECONDS)

    def _wait_stored(self, count: int) -> float:
        """Once the group has everything acknowledged, the moment count() shows all rows."""
        deadline = time.monotonic() + 600
        while self._group()[:2] != (0, 0):
            assert time.monotonic() < deadline, f"stuck: {self._group()}"
            time.sleep(_POLL_SECONDS)
        self.stored += count
        while (rows := self._count()) < self.stored:
            assert time.monotonic() < deadline, f"acknowledged but only {rows} rows"
            time.sleep(_POLL_SECONDS)
        assert rows == self.stored, f"{rows} rows for {self.stored} events"
        return time.monotonic()

    def _group(self) -> tuple[int, int, int]:
        """(undelivered, pending, acknowledged) entries of the analytics group."""
        info = self.bench.redis.xinfo_stream(self.bench.stream)
        groups = self.bench.redis.xinfo_groups(self.bench.stream)
        group = next((g for g in groups if g["name"] == b"analytics"), None)
        if group is None:
            return int(info["length"]), 0, 0
        assert group["lag"] is not None, "Redis cannot tell the group's lag"
        undelivered, pending = int(group["lag"]), int(group["pending"])
        return undelivered, pending, int(info["length"]) - undelivered - pending

    def _count(self) -> int:
        window = {"start": self.since.isoformat(),
                  "end": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}  # fmt: skip
        rows = self.bench.query("usage_by_project", window)["rows"]
        return sum(int(row[1]) for row in rows)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max of each rate over the runs."""
    keys = [k for k, v in runs[0].items() if k.endswith("_per_s") and isinstance(v, float)]
    out: dict[str, Any] = {}
    for key in keys:
        values = [run[key] for run in runs]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    costs = [run["cpu_us_per_event"] for run in runs]
    out["cpu_us_per_event"] = {k: statistics.median(c[k] for c in costs) for k in costs[0]}
    return out


class _PreEncoded:
    """XADDs encoded before the clock starts, then written to a socket of their own in
    chunks, each chunk's replies read before the next (like a pipeline's execute)."""

    def __init__(self, client: redis.Redis, stream: str, payloads: list[dict[str, bytes]]) -> None:
        self._kwargs = client.connection_pool.connection_kwargs
        self._chunks = [
            b"".join(hiredis.pack_command(("XADD", stream, "*", *_flat(fields)))
                     for fields in payloads[start : start + 1000])
            for start in range(0, len(payloads), 1000)
        ]  # fmt: skip
        self._counts = [min(1000, len(payloads) - start) for start in range(0, len(payloads), 1000)]

    def send(self, payloads: list[dict[str, bytes]]) -> None:
        host, port = self._kwargs.get("host", "127.0.0.1"), self._kwargs.get("port", 6379)
        with socket.create_connection((host, port)) as sock:
            reader = hiredis.Reader()
            select: Any = ("SELECT", str(self._kwargs.get("db", 0)))  # hiredis types a 1-tuple
            sock.sendall(hiredis.pack_command(select))
            self._replies(sock, reader, 1)
            for chunk, count in zip(self._chunks, self._counts, strict=True):
                sock.sendall(chunk)
                self._replies(sock, reader, count)

    @staticmethod
    def _replies(sock: socket.socket, reader: hiredis.Reader, count: int) -> None:
        while count:
            reply = reader.gets()
            if reply is False:
                reader.feed(sock.recv(1 << 20))
                continue
            assert not isinstance(reply, hiredis.ReplyError), reply
            count -= 1


def _flat(fields: dict[str, bytes]) -> list[Any]:
    return [item for pair in fields.items() for item in pair]


class _CpuMeter:
    def __init__(self, client: redis.Redis, pid: int) -> None:
        self._client, self._pid = client, pid
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        info: Any = self._client.info("cpu")
        redis_cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return cpu_seconds(self._pid), redis_cpu, time.process_time()

    def per_event(self, events: int) -> dict[str, float]:
        end = self._sample()
        names = ("service", "redis", "bench_publisher_and_polling")
        costs = {n: (b - a) / events * 1e6 for n, a, b in zip(names, self._start, end, strict=True)}
        costs["total"] = sum(costs.values())
        return costs


class _Profiler:
    """py-spy on the service for a few seconds of the drain (from its first stored row:
    start-up imports are not the drain), in a thread."""

    def __init__(self, pid: int, directory: Path, seconds: float = 3.0) -> None:
        self._seconds = seconds
        handle, name = tempfile.mkstemp(prefix="analytics-", suffix=".raw", dir=directory)
        os.close(handle)
        self._output = Path(name)
        self._outcome: tuple[bool, str] = (False, "not run")
        self._thread = threading.Thread(target=self._run, args=(pid,))
        self._thread.start()

    def _run(self, pid: int) -> None:
        self._outcome = asyncio.run(profiling.record(pid, self._seconds, self._output))

    def result(self) -> dict[str, Any]:
        self._thread.join()
        ok, message = self._outcome
        if not ok:
            return {"error": message}
        return profiling.summarise(self._output.read_text(), self._seconds)
