"""The pipeline gathers light traffic by time and reads a backlog back to back (issue 21).

A fake consumer stands in for Redis: in a trickle every read finds one new event (an
event always arrived since the last read), in a backlog every read finds a full page.
The counts asserted on are of reads per batch, which a slower machine only lowers.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.analytics.conftest import make_event
from watchllm_analytics.batcher import Batch, FlushReason
from watchllm_analytics.blocks import RowBlock
from watchllm_analytics.health import HealthState
from watchllm_analytics.metrics import AnalyticsMetrics
from watchllm_analytics.pipeline import IngestPipeline, PipelineLimits
from watchllm_analytics.stream_group import Delivery, NewEntries

pytestmark = pytest.mark.unit


class FakeConsumer:
    def __init__(self, per_read: int | None) -> None:
        self.per_read = per_read  # None: a full page (``count``) every read
        self.reads = 0
        self.delivered = 0
        self._ids = itertools.count(1)

    async def ensure_group(self) -> None:
        pass

    async def read_own_pending(self, after: bytes, count: int) -> list[Delivery]:
        return []

    async def reclaim_stale(self, cursor: bytes, count: int) -> tuple[bytes, list[Delivery]]:
        return b"0-0", []

    async def read_new(self, count: int, block_ms: int) -> NewEntries:
        await asyncio.sleep(0)
        self.reads += 1
        size = count if self.per_read is None else min(count, self.per_read)
        self.delivered += size
        ids = [f"{next(self._ids)}-0".encode() for _ in range(size)]
        return NewEntries(ids, [{b"data": make_event().model_dump_json().encode()} for _ in ids])


class FakeStorer:
    def __init__(self) -> None:
        self.batches: list[Batch[RowBlock]] = []

    def begin_shutdown(self) -> None:
        pass

    async def run(self, queue: asyncio.Queue[Batch[RowBlock] | None]) -> None:
        while (batch := await queue.get()) is not None:
            self.batches.append(batch)


async def run_until(consumer: FakeConsumer, limits: PipelineLimits, batches: int) -> FakeStorer:
    storer = FakeStorer()
    pipeline = IngestPipeline(
        consumer, None, storer, AnalyticsMetrics(), HealthState(), limits,  # type: ignore[arg-type]
    )  # fmt: skip
    running = asyncio.create_task(pipeline.run())
    deadline = asyncio.get_running_loop().time() + 60
    while len(storer.batches) < batches:
        assert asyncio.get_running_loop().time() < deadline, "no batches"
        await asyncio.sleep(0.01)
    pipeline.stop()
    await running
    return storer


def limits(max_rows: int, max_seconds: float, read_count: int) -> PipelineLimits:
    return PipelineLimits(max_rows, max_seconds, read_count, max_deliveries=3,
                          reclaim_interval_seconds=3600)  # fmt: skip


async def test_a_trickle_is_gathered_into_one_batch_per_interval_with_two_reads_each() -> None:
    consumer = FakeConsumer(per_read=1)
    storer = await run_until(consumer, limits(1000, 0.1, 100), batches=3)
    timed = [batch for batch in storer.batches if batch.reason is FlushReason.TIME]
    assert len(timed) >= 3
    # the read that opens a batch, the one when it is due; none per event in between
    assert consumer.reads <= 2 * len(storer.batches)
    assert sum(len(RowBlock.concat(b.items)) for b in storer.batches) == consumer.delivered


async def test_a_backlog_is_read_page_after_page_without_waiting_for_time() -> None:
    consumer = FakeConsumer(per_read=None)
    # a minute per batch: only the size bound can close these within the test
    storer = await run_until(consumer, limits(50, 60.0, 10), batches=3)
    assert [b.reason for b in storer.batches[:3]] == [FlushReason.SIZE] * 3
    assert all(len(RowBlock.concat(b.items)) == 50 for b in storer.batches[:3])
