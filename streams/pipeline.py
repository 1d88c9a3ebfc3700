"""Keep several batches in flight on the Ray pool, and finish them in the order they arrived.

The ingest agent takes a batch from its stream, starts its transform on the pool and goes back for the next
batch without waiting, so with N actors N batches are transformed at once. The second stage (routing the
results to the broker, then acknowledging the source records) runs one batch at a time, strictly in the
order the batches were taken: events of one encounter leave in the order its messages arrived in the
partition, and an offset is only acknowledged once its batch's outputs are on the broker.

The depth (batches taken and not yet finished) is bounded by a callable, so it follows the pool's size as
it is resized. A caller blocks in :meth:`OrderedPipeline.put` while the pipeline is full: that is the
backpressure that stops the stream from reading further ahead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class PipelineStopped(RuntimeError):
    """The finishing stage died; nothing more may be put (the agent restarts and re-reads)."""


class OrderedPipeline(Generic[T, R]):
    """Start items concurrently with ``start``; run ``finish`` on each, one at a time, in arrival order."""

    def __init__(
        self,
        start: Callable[[T], Awaitable[R]],
        finish: Callable[[T, R], Awaitable[None]],
        depth: Callable[[], int],
    ) -> None:
        self._start = start
        self._finish = finish
        self._depth = depth
        self._queue: deque[tuple[T, asyncio.Task[R]]] = deque()
        self._changed: asyncio.Condition | None = None  # made on the loop that runs the pipeline
        self._finisher: asyncio.Task[None] | None = None
        self._waking: asyncio.Future[None] | None = None
        self.finished = 0

    @property
    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    @property
    def pending(self) -> int:
        """Items taken and not yet finished."""
        return len(self._queue)

    def _check(self) -> None:
        finisher = self._finisher
        if finisher is not None and finisher.done():
            exc = None if finisher.cancelled() else finisher.exception()
            raise PipelineStopped(f"the finishing stage stopped: {exc!r}")

    async def put(self, item: T) -> None:
        """Start ``item`` once the pipeline has room (blocks while it is full)."""
        self._check()
        condition = self._condition
        async with condition:
            await condition.wait_for(lambda: len(self._queue) < max(1, self._depth()) or self._stopped())
            self._check()
            self._queue.append((item, asyncio.ensure_future(self._start(item))))
            condition.notify_all()
        if self._finisher is None:
            self._finisher = asyncio.ensure_future(self._run_finisher())

    def _stopped(self) -> bool:
        return self._finisher is not None and self._finisher.done()

    async def _run_finisher(self) -> None:
        condition = self._condition
        try:
            while True:
                async with condition:
                    await condition.wait_for(lambda: bool(self._queue))
                    item, started = self._queue[0]
                result = await started
                await self._finish(item, result)
                async with condition:
                    self._queue.popleft()
                    self.finished += 1
                    condition.notify_all()
        except BaseException:
            # Wake whoever waits in put() or join(): they must see that the pipeline stopped.
            self._waking = asyncio.ensure_future(self._wake())  # runs once this task is done
            raise

    async def _wake(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def join(self) -> None:
        """Wait until every item put so far is finished."""
        condition = self._condition
        async with condition:
            await condition.wait_for(lambda: not self._queue or self._stopped())
        self._check()

    async def close(self) -> None:
        """Cancel what is in flight (its records stay unacknowledged and are read again)."""
        for _, started in self._queue:
            started.cancel()
        if self._finisher is not None:
            self._finisher.cancel()
            await asyncio.gather(self._finisher, return_exceptions=True)
        await asyncio.gather(*(started for _, started in self._queue), return_exceptions=True)
        self._queue.clear()


__all__ = ["OrderedPipeline", "PipelineStopped"]
