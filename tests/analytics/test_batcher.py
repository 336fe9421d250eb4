"""The batcher's size and time bounds, with a fake clock: no I/O, no sleeping."""

from __future__ import annotations

import pytest

from watchllm_analytics.batcher import Batcher, FlushReason

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_batch_comes_out_of_the_add_that_filled_it() -> None:
    batcher: Batcher[int] = Batcher(max_items=3, max_seconds=10, clock=FakeClock())
    assert batcher.add(1) is None
    assert batcher.add(2) is None
    batch = batcher.add(3)
    assert batch is not None
    assert (batch.items, batch.reason) == ([1, 2, 3], FlushReason.SIZE)
    assert len(batcher) == 0
    assert batcher.take_due() is None


def test_a_batch_is_due_max_seconds_after_its_first_item() -> None:
    clock = FakeClock()
    batcher: Batcher[str] = Batcher(max_items=100, max_seconds=2.0, clock=clock)
    assert batcher.seconds_until_due() is None
    batcher.add("a")
    clock.now += 1.5
    batcher.add("b")  # a later item does not restart the clock
    assert batcher.take_due() is None
    assert batcher.seconds_until_due() == pytest.approx(0.5)
    clock.now += 0.5
    batch = batcher.take_due()
    assert batch is not None
    assert (batch.items, batch.reason, batch.opened_at) == (["a", "b"], FlushReason.TIME, 1000.0)
    assert batcher.seconds_until_due() is None


def test_the_clock_starts_again_with_the_next_batch() -> None:
    clock = FakeClock()
    batcher: Batcher[int] = Batcher(max_items=2, max_seconds=1.0, clock=clock)
    batcher.add(1)
    batcher.add(2)  # full
    clock.now += 5
    batcher.add(3)
    assert batcher.take_due() is None
    assert batcher.seconds_until_due() == pytest.approx(1.0)


def test_seconds_until_due_never_goes_negative() -> None:
    clock = FakeClock()
    batcher: Batcher[int] = Batcher(max_items=10, max_seconds=1.0, clock=clock)
    batcher.add(1)
    clock.now += 7
    assert batcher.seconds_until_due() == 0.0


def test_drain_takes_whatever_is_there() -> None:
    batcher: Batcher[int] = Batcher(max_items=10, max_seconds=1.0, clock=FakeClock())
    assert batcher.drain() is None
    batcher.add(1)
    batch = batcher.drain()
    assert batch is not None
    assert (batch.items, batch.reason) == ([1], FlushReason.DRAIN)
    assert batcher.drain() is None


def test_room_says_how_many_items_still_fit() -> None:
    batcher: Batcher[int] = Batcher(max_items=3, max_seconds=1.0, clock=FakeClock())
    assert batcher.room == 3
    batcher.add(1)
    assert batcher.room == 2


@pytest.mark.parametrize(("items", "seconds"), [(0, 1.0), (1, 0.0), (-1, 1.0)])
def test_bounds_must_make_sense(items: int, seconds: float) -> None:
    with pytest.raises(ValueError):
        Batcher(max_items=items, max_seconds=seconds)


def test_add_many_fills_batches_in_order_and_keeps_the_rest_open() -> None:
    clock = FakeClock()
    batcher: Batcher[int] = Batcher(max_items=3, max_seconds=1.0, clock=clock)
    batcher.add(0)
    clock.now += 0.5
    full = batcher.add_many(list(range(1, 8)))
    assert [(b.items, b.reason) for b in full] == [
        ([0, 1, 2], FlushReason.SIZE),
        ([3, 4, 5], FlushReason.SIZE),
    ]
    assert full[0].opened_at == 1000.0 and full[1].opened_at == 1000.5
    assert len(batcher) == 2 and batcher.room == 1
    assert batcher.seconds_until_due() == pytest.approx(1.0)  # 6 opened the next one
    assert batcher.add_many([]) == []


def test_an_item_read_earlier_opens_the_batch_at_its_read_time() -> None:
    clock = FakeClock()
    batcher: Batcher[str] = Batcher(max_items=100, max_seconds=2.0, clock=clock)
    batcher.add("held", at=clock.now - 2.0)  # read two seconds ago, added only now
    batch = batcher.take_due()
    assert batch is not None and batch.items == ["held"]
