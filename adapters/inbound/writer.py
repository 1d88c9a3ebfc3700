"""Group commit: many connections' messages made durable in one store transaction.

A gateway calls :meth:`GroupCommitWriter.store` for each message and awaits its receipt. One transaction
runs at a time, in a worker thread; the messages that arrive while it runs form the next one. Under load a
transaction carries many messages and one fsync; alone, a message waits for nothing but its own commit.

When the store fails, or does not answer within ``timeout_s``, the caller gets
:class:`StoreUnavailableError` and must answer the sender "not stored, resend". A transaction that was
slow but committed after all is harmless: the resend finds the message stored and gets its first ACK.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.inbound.store import AckFor, InboundMessage, MessageStore, Receipt
from canonical.errors import RetryableError

__all__ = ["GroupCommitWriter", "StoreUnavailableError"]

log = logging.getLogger(__name__)


class StoreUnavailableError(RetryableError):
    """The message store did not make a message durable: the sender must resend it."""


@dataclass(slots=True)
class _Waiting:
    message: InboundMessage
    ack_for: AckFor
    future: asyncio.Future[Receipt]


class GroupCommitWriter:
    """Batch concurrent store calls into one transaction each."""

    def __init__(self, store: MessageStore, *, timeout_s: float, max_batch: int = 500) -> None:
        self._store = store
        self._timeout_s = timeout_s
        self._max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0
        self.stored = 0

    async def start(self) -> None:
        """Start the committing task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="message-store-commit")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        while self._queue:
            await self._commit(self._take())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def store(self, message: InboundMessage, ack_for: AckFor) -> Receipt:
        """Make ``message`` durable; return its receipt, or raise StoreUnavailableError."""
        if self._task is None:
            raise StoreUnavailableError("the message store writer is not running")
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        # A caller that timed out no longer awaits it: retrieve a late failure so asyncio does not warn.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._queue.append(_Waiting(message, ack_for, future))
        self._wake.set()
        try:
            # Shielded: a timeout here must not cancel the batch the message rides in.
            return await asyncio.wait_for(asyncio.shield(future), self._timeout_s)
        except TimeoutError:
            raise StoreUnavailableError(
                f"the message store did not answer within {self._timeout_s:g}s "
                "(HCSYNC_MESSAGE_STORE_TIMEOUT_S)"
            ) from None

    def _take(self) -> list[_Waiting]:
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        return batch

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._commit(self._take())

    async def _commit(self, batch: Sequence[_Waiting]) -> None:
        items = [(w.message, w.ack_for) for w in batch]
        try:
            receipts = await asyncio.to_thread(self._store.store, items)
        except Exception as exc:
            # Say why once per batch; every sender in it is told to resend.
            cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
            log.warning(
                "message store unavailable: %d message(s) not stored, senders told to resend (%s: %s)",
                len(batch),
                type(cause).__name__,
                str(cause)[:200],
            )
            error = StoreUnavailableError(f"the message store failed ({type(exc).__name__})")
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            return
        self.transactions += 1
        self.stored += len(batch)
        for waiting, receipt in zip(batch, receipts, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(receipt)
