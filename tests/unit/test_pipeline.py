"""The ordered pipeline: batches start concurrently, finish in arrival order, and never exceed the depth."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.pipeline import OrderedPipeline, PipelineStopped


class _Probe:
    """Records what ran: the start overlap, the finishing order and the largest depth seen."""

    def __init__(self, delays: list[float], depth: int) -> None:
        self.delays = delays
        self.depth = depth
        self.running = 0
        self.most_running = 0
        self.finished: list[int] = []
        self.pipeline: OrderedPipeline[int, int] = OrderedPipeline(
            self.start, self.finish, lambda: self.depth
        )
        self.most_pending = 0

    async def start(self, item: int) -> int:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delays[item])
        finally:
            self.running -= 1
        return item * 10

    async def finish(self, item: int, result: int) -> None:
        assert result == item * 10
        self.most_pending = max(self.most_pending, self.pipeline.pending)
        await asyncio.sleep(0)
        self.finished.append(item)


@settings(max_examples=40, deadline=None)
@given(
    delays=st.lists(st.sampled_from([0.0, 0.001, 0.003, 0.006]), min_size=1, max_size=30),
    depth=st.integers(min_value=1, max_value=6),
)
def test_items_finish_in_arrival_order_within_the_depth(delays: list[float], depth: int) -> None:
    probe = _Probe(delays, depth)

    async def run() -> None:
        for item in range(len(delays)):
            await probe.pipeline.put(item)
            assert probe.pipeline.pending <= depth
        await probe.pipeline.join()

    asyncio.run(run())
    assert probe.finished == list(range(len(delays)))
    assert probe.most_running <= depth and probe.most_pending <= depth
    assert probe.pipeline.pending == 0 and probe.pipeline.finished == len(delays)


def test_starts_overlap_when_there_is_room() -> None:
    """With depth 4, four slow starts run at once: the point of the pipeline."""
    probe = _Probe([0.05] * 8, depth=4)

    async def run() -> None:
        for item in range(8):
            await probe.pipeline.put(item)
        await probe.pipeline.join()

    asyncio.run(run())
    assert probe.most_running == 4 and probe.finished == list(range(8))


def test_a_slow_first_item_holds_back_the_finishing_of_later_ones() -> None:
    delays = [0.05] + [0.0] * 5
    probe = _Probe(delays, depth=6)
    seen_before_first: list[int] = []

    async def run() -> None:
        for item in range(6):
            await probe.pipeline.put(item)
        await asyncio.sleep(0.02)  # items 1..5 are transformed by now; item 0 is not
        seen_before_first.extend(probe.finished)
        await probe.pipeline.join()

    asyncio.run(run())
    assert seen_before_first == [] and probe.finished == list(range(6))


def test_the_depth_follows_a_resize() -> None:
    depth = {"now": 1}
    running = {"now": 0, "most": 0}

    async def start(item: int) -> int:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.01 * random.random())
        running["now"] -= 1
        return item

    async def finish(item: int, result: int) -> None:
        return None

    async def run() -> None:
        pipeline: OrderedPipeline[int, int] = OrderedPipeline(start, finish, lambda: depth["now"])
        for item in range(10):
            await pipeline.put(item)
        await pipeline.join()
        assert running["most"] == 1
        depth["now"] = 5
        for item in range(20):
            await pipeline.put(item)
        await pipeline.join()

    asyncio.run(run())
    assert running["most"] > 1


def test_a_failed_finish_stops_the_pipeline_loudly() -> None:
    async def start(item: int) -> int:
        return item

    async def finish(item: int, result: int) -> None:
        if item == 2:
            raise OSError("broker gone")

    async def run() -> None:
        pipeline: OrderedPipeline[int, int] = OrderedPipeline(start, finish, lambda: 2)
        with pytest.raises(PipelineStopped, match="broker gone"):
            for item in range(50):
                await pipeline.put(item)
            await pipeline.join()
        await pipeline.close()
        assert pipeline.pending == 0
        assert pipeline.finished == 2  # items 0 and 1; nothing after the failure is finished

    asyncio.run(run())


def test_close_cancels_what_is_in_flight() -> None:
    cancelled: list[int] = []

    async def start(item: int) -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise
        return item

    async def finish(item: int, result: int) -> None:
        raise AssertionError("nothing may finish")

    async def run() -> None:
        pipeline: OrderedPipeline[int, int] = OrderedPipeline(start, finish, lambda: 3)
        for item in range(3):
            await pipeline.put(item)
        await asyncio.sleep(0.01)
        await pipeline.close()

    asyncio.run(run())
    assert sorted(cancelled) == [0, 1, 2]
