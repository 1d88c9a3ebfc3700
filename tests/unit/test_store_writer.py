"""adapters.inbound.writer: group commit, and a store that fails or hangs tells the sender to resend."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

from adapters.inbound.hl7v2 import hl7v2_inbound
from adapters.inbound.store import InboundMessage, MessageStore, Receipt, Verdict
from adapters.inbound.writer import GroupCommitWriter, StoreUnavailableError
from canonical.hl7v2.parser import parse_message
from tests.hl7_samples import adt

NOW = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)


def message(control_id: str) -> InboundMessage:
    raw = adt("A01", control_id, "V1")
    return hl7v2_inbound(raw, parse_message(raw), "test", NOW)


def ack(verdict: Verdict, _first: Receipt | None) -> bytes:
    return verdict.value.encode()


def test_concurrent_messages_share_transactions(tmp_path: Path) -> None:
    store = MessageStore(f"sqlite:///{tmp_path / 'm.db'}")

    async def run() -> list[Receipt]:
        writer = GroupCommitWriter(store, timeout_s=30)
        await writer.start()
        try:
            receipts = await asyncio.gather(*(writer.store(message(f"C{n}"), ack) for n in range(200)))
        finally:
            await writer.stop()
        # 200 senders at once: far fewer transactions than messages (the first may ride alone).
        assert writer.stored == 200 and writer.transactions < 50, (writer.stored, writer.transactions)
        return receipts

    receipts = asyncio.run(run())
    assert [r.verdict for r in receipts] == [Verdict.NEW] * 200
    assert store.count() == 200
    store.close()


def test_a_failing_store_tells_every_sender_of_the_batch_to_resend(tmp_path: Path) -> None:
    class Broken(MessageStore):
        def store(self, items: object) -> list[Receipt]:  # type: ignore[override]
            raise sqlite3.OperationalError("disk I/O error")

    store = Broken(f"sqlite:///{tmp_path / 'm.db'}")

    async def run() -> None:
        writer = GroupCommitWriter(store, timeout_s=5)
        await writer.start()
        try:
            results = await asyncio.gather(
                *(writer.store(message(f"C{n}"), ack) for n in range(3)), return_exceptions=True
            )
        finally:
            await writer.stop()
        assert all(isinstance(r, StoreUnavailableError) for r in results), results

    asyncio.run(run())
    store.close()


def test_a_locked_store_answers_resend_in_time_and_the_resend_finds_the_message(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = MessageStore(f"sqlite:///{path}", busy_timeout_s=3.0)
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    released = threading.Timer(2.0, lambda: locker.execute("COMMIT"))

    async def run() -> None:
        writer = GroupCommitWriter(store, timeout_s=0.5)
        await writer.start()
        try:
            with pytest.raises(StoreUnavailableError, match="HCSYNC_MESSAGE_STORE_TIMEOUT_S"):
                await writer.store(message("C1"), ack)
            released.start()
            # The first attempt's transaction commits once the lock is gone; the resend is its duplicate.
            for _ in range(40):
                try:
                    receipt = await writer.store(message("C1"), ack)
                    break
                except StoreUnavailableError:
                    await asyncio.sleep(0.25)
            else:
                pytest.fail("the store never came back after the lock was released")
            assert receipt.verdict in (Verdict.DUPLICATE, Verdict.NEW)
        finally:
            await writer.stop()

    try:
        asyncio.run(run())
    finally:
        released.cancel()
        locker.close()
    assert store.count() == 1, "one message, however many attempts"
    store.close()


def test_a_stopped_writer_refuses() -> None:
    writer = GroupCommitWriter(None, timeout_s=1)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailableError, match="not running"):
        asyncio.run(writer.store(message("C1"), ack))
