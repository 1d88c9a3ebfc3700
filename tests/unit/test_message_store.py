"""adapters.inbound.store: verdicts, conflicts, forwarding epochs, outcomes, filters and retention."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from adapters.inbound.hl7v2 import hl7v2_digest, hl7v2_inbound, hl7v2_inbound_bytes
from adapters.inbound.outcomes import MESSAGE_ID_HEADER, MessageOutcome, OutcomeBatch, message_id_of
from adapters.inbound.store import (
    InboundMessage,
    MessageFilter,
    MessageStore,
    OutcomeUpdate,
    Receipt,
    Verdict,
)
from canonical.hl7v2.parser import parse_message
from tests.hl7_samples import adt, dft

NOW = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> MessageStore:
    opened = MessageStore(f"sqlite:///{tmp_path / 'messages.db'}")
    yield opened
    opened.close()


def inbound(raw: bytes, at: dt.datetime = NOW, channel: str = "mllp 10.0.0.1:5000") -> InboundMessage:
    return hl7v2_inbound(raw, parse_message(raw), channel, at)


def acks(verdict: Verdict, first: Receipt | None) -> bytes:
    return f"ACK-{verdict.value}".encode() + (b"" if first is None else b" of " + first.message_id.encode())


def test_a_new_message_is_stored_with_its_ack_and_pending(store: MessageStore) -> None:
    raw = adt("A01", "C1", "V1")
    [receipt] = store.store([(inbound(raw), acks)])
    assert receipt.verdict is Verdict.NEW and receipt.ack == b"ACK-new"
    info = store.get(receipt.message_id)
    assert info is not None
    assert (info.sender, info.control_id, info.message_type) == ("EPIC^NMH", "C1", "ADT^A01")
    assert (info.visit_number, info.state, info.ack) == ("V1", "pending", b"ACK-new")
    assert store.content(receipt.message_id) == raw
    [pending] = store.pending(store.epoch(), 10)
    assert pending.content == raw and pending.broker_key == b"EPIC^NMH|C1" and pending.conflict_of is None


def test_a_resend_is_a_duplicate_answered_with_the_first_ack(store: MessageStore) -> None:
    raw = adt("A01", "C1", "V1")
    [first] = store.store([(inbound(raw), acks)])
    # A resend may re-stamp MSH-7 and change line endings: still the same message.
    resent = raw.replace(b"\r", b"\r\n")
    msh7 = raw.split(b"|")[6]
    resent = resent.replace(msh7, b"20991231235959", 1)
    [again] = store.store([(inbound(resent, NOW + dt.timedelta(minutes=5)), acks)])
    assert again.verdict is Verdict.DUPLICATE and again.message_id == first.message_id
    assert again.ack == b"ACK-new"  # the stored ACK, not a new one
    assert store.count() == 1


def test_same_control_id_with_other_content_is_a_conflict_never_dropped(store: MessageStore) -> None:
    original = dft("C7", "V1", [("CG", "99283", "ED visit", 1, "450.00")])
    corrected = dft("C7", "V1", [("CG", "99283", "ED visit", 1, "540.00")])
    [first] = store.store([(inbound(original), acks)])
    [conflict] = store.store([(inbound(corrected), acks)])
    assert conflict.verdict is Verdict.CONFLICT
    assert conflict.first_message_id == first.message_id and conflict.first_received_at == NOW
    assert conflict.ack == b"ACK-conflict of " + first.message_id.encode()
    info = store.get(conflict.message_id)
    assert info is not None and info.state == "conflict" and info.conflict_of == first.message_id
    assert store.content(conflict.message_id) == corrected
    # The conflict is forwarded too (as a quarantine record), pointing at the first message.
    pending = {p.message_id: p.conflict_of for p in store.pending(store.epoch(), 10)}
    assert pending == {first.message_id: None, conflict.message_id: first.message_id}
    # The same conflicting content again is a duplicate of the conflict, not a second one.
    [repeat] = store.store([(inbound(corrected), acks)])
    assert repeat.verdict is Verdict.DUPLICATE and repeat.message_id == conflict.message_id
    assert store.count(MessageFilter(state="conflict")) == 1


def test_one_batch_sees_its_own_rows(store: MessageStore) -> None:
    a = adt("A01", "C1", "V1")
    b = adt("A01", "C1", "V2")  # same control id, other content
    receipts = store.store([(inbound(a), acks), (inbound(a), acks), (inbound(b), acks)])
    assert [r.verdict for r in receipts] == [Verdict.NEW, Verdict.DUPLICATE, Verdict.CONFLICT]
    assert store.count() == 2


def test_forwarding_is_marked_per_epoch_and_a_new_epoch_makes_everything_pending(store: MessageStore) -> None:
    receipts = store.store([(inbound(adt("A01", f"C{n}", "V1")), acks) for n in range(5)])
    epoch = store.epoch()
    assert [p.message_id for p in store.pending(epoch, 10)] == [r.message_id for r in receipts]  # in order
    assert store.mark_forwarded([r.message_id for r in receipts[:3]], epoch) == 3
    assert [p.message_id for p in store.pending(epoch, 10)] == [r.message_id for r in receipts[3:]]
    new = store.new_epoch("broker restarted")
    assert new == epoch + 1
    assert len(store.pending(new, 10)) == 5
    # A forwarder that sent to the old broker marks in the old epoch: nothing is hidden from the new one.
    store.mark_forwarded([r.message_id for r in receipts], epoch)
    assert len(store.pending(new, 10)) == 5
    store.mark_forwarded([r.message_id for r in receipts], new)
    assert store.pending(new, 10) == []
    assert store.totals()["pending"] == 0


def test_receiving_and_forwarding_search_indexes_instead_of_scanning_the_store(store: MessageStore) -> None:
    """The gateway's lookups and the forwarder's poll must not grow with the number of stored messages.

    SQLite's own query plans, captured while the store works: a row-value IN over sender and control id
    once made SQLite scan every first receipt for each transaction, and the pending poll once scanned past
    every forwarded row.
    """
    plans: list[tuple[str, str]] = []

    def explain(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM inbound_messages" in statement:
            raw = conn.connection.dbapi_connection.cursor()
            detail = " / ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", params))
            plans.append((statement, detail))

    event.listen(store._engine, "before_cursor_execute", explain)
    store.store([(inbound(adt("A01", f"C{n}", f"V{n}")), acks) for n in range(20)])
    store.pending(store.epoch(), 10)
    event.remove(store._engine, "before_cursor_execute", explain)
    [first_receipts] = [detail for statement, detail in plans if "control_id = " in statement]
    assert "SCAN" not in first_receipts and "USING INDEX uq_inbound_first" in first_receipts, first_receipts
    [poll] = [detail for statement, detail in plans if "ORDER BY inbound_messages.seq" in statement]
    assert "USING INDEX ix_inbound_unforwarded" in poll, poll


def test_a_store_made_before_the_pending_flag_gets_it_and_forwards_its_messages_again(tmp_path: Path) -> None:
    """An older database gains the column (every message pending: sent again, at least once) and index."""
    url = f"sqlite:///{tmp_path / 'messages.db'}"
    old = MessageStore(url)
    [receipt] = old.store([(inbound(adt("A01", "C1", "V1")), acks)])
    old.mark_forwarded([receipt.message_id], old.epoch())
    old.close()
    with sqlite3.connect(tmp_path / "messages.db") as conn:
        conn.execute("DROP INDEX ix_inbound_unforwarded")
        conn.execute("ALTER TABLE inbound_messages DROP COLUMN pending")
    reopened = MessageStore(url)
    try:
        assert [p.message_id for p in reopened.pending(reopened.epoch(), 10)] == [receipt.message_id]
        with sqlite3.connect(tmp_path / "messages.db") as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "ix_inbound_unforwarded" in names
    finally:
        reopened.close()


def test_opening_and_reading_the_store_never_wait_for_the_write_lock(tmp_path: Path) -> None:
    """`hcsync status`, `hcsync messages` and the forwarder's poll read while the gateway writes: with
    the write lock held elsewhere (as a long transaction would), they must answer, not queue behind it
    and fail with "database is locked" (the long chaos run did, when every read began BEGIN IMMEDIATE)."""
    url = f"sqlite:///{tmp_path / 'messages.db'}"
    first = MessageStore(url)
    [receipt] = first.store([(inbound(adt("A01", "C1", "V1")), acks)])
    first.close()
    writer = sqlite3.connect(tmp_path / "messages.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # the write lock, held
        reader = MessageStore(url, busy_timeout_s=0.2)
        try:
            assert [p.message_id for p in reader.pending(reader.epoch(), 10)] == [receipt.message_id]
            assert reader.totals()["messages"] == 1 and reader.count(MessageFilter()) == 1
            assert [m.message_id for m in reader.list()] == [receipt.message_id]
            assert reader.content(receipt.message_id).startswith(b"MSH|")
        finally:
            reader.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_replay_makes_messages_pending_again(store: MessageStore) -> None:
    [receipt] = store.store([(inbound(adt("A01", "C1", "V1")), acks)])
    store.mark_forwarded([receipt.message_id], store.epoch())
    assert store.mark_for_replay([receipt.message_id]) == 1
    assert [p.message_id for p in store.pending(store.epoch(), 10)] == [receipt.message_id]
    info = store.get(receipt.message_id)
    assert info is not None and info.replay_count == 1


def test_outcomes_by_id_or_key_and_the_newest_wins(store: MessageStore) -> None:
    [receipt] = store.store([(inbound(adt("A01", "C1", "V1")), acks)])
    quarantined = OutcomeUpdate(
        message_id=receipt.message_id,
        standard="hl7v2",
        broker_key=b"EPIC^NMH|C1",
        outcome="quarantined",
        at=NOW,
        exception_id="x1",
        rule="MD-CHARGE-CODE-UNMAPPED",
    )
    assert store.record_outcomes([quarantined]) == 1
    # A replay from the quarantine comes back without the header: found by its key, and it is newer.
    mapped = OutcomeUpdate(
        message_id="",
        standard="hl7v2",
        broker_key=b"EPIC^NMH|C1",
        outcome="mapped",
        at=NOW + dt.timedelta(minutes=1),
        event_ids=("e1", "e2"),
    )
    store.record_outcomes([mapped])
    # A late redelivery of the old outcome changes nothing.
    store.record_outcomes([quarantined])
    info = store.get(receipt.message_id)
    assert info is not None
    assert (info.outcome, info.event_ids, info.exception_id) == ("mapped", ("e1", "e2"), None)
    assert store.count(MessageFilter(outcome="mapped")) == 1
    assert store.count(MessageFilter(outcome="none")) == 0


def test_filters(store: MessageStore) -> None:
    store.store(
        [
            (inbound(adt("A01", "C1", "V1"), NOW), acks),
            (inbound(adt("A03", "C2", "V1"), NOW + dt.timedelta(hours=1)), acks),
            (inbound(dft("C3", "V2", [("CG", "99283", "x", 1, "1.00")]), NOW + dt.timedelta(hours=2)), acks),
        ]
    )
    assert [i.control_id for i in store.list(MessageFilter(visit_number="V1"))] == [
        "C2",
        "C1",
    ]  # newest first
    assert [i.control_id for i in store.list(MessageFilter(message_type="ADT^"))] == ["C2", "C1"]
    assert [i.control_id for i in store.list(MessageFilter(message_type="DFT^P03"))] == ["C3"]
    assert [i.control_id for i in store.list(MessageFilter(since=NOW + dt.timedelta(minutes=30)))] == [
        "C3",
        "C2",
    ]
    assert [i.control_id for i in store.list(MessageFilter(until=NOW + dt.timedelta(minutes=30)))] == ["C1"]
    assert store.count(MessageFilter(control_id="C2", sender="EPIC^NMH")) == 1
    assert store.count(MessageFilter(patient_id="nobody")) == 0
    [first] = store.list(MessageFilter(control_id="C1"))
    assert store.get(first.message_id[:8]) == first  # a unique prefix finds it
    with pytest.raises(ValueError, match="unknown state"):
        store.list(MessageFilter(state="lost"))


def test_purge_keeps_what_is_not_forwarded(store: MessageStore) -> None:
    old = store.store([(inbound(adt("A01", f"C{n}", "V1"), NOW), acks) for n in range(3)])
    store.store([(inbound(adt("A01", "NEW", "V1"), NOW + dt.timedelta(days=40)), acks)])
    store.mark_forwarded([r.message_id for r in old[:2]], store.epoch())
    assert store.purge(NOW + dt.timedelta(days=1)) == 2
    assert {i.control_id for i in store.list()} == {"C2", "NEW"}  # C2 was never forwarded


def test_a_commit_is_on_disk_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = MessageStore(f"sqlite:///{path}")
    store.store([(inbound(adt("A01", "C1", "V1")), acks)])
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    store.close()
    # Another process (here: another connection) sees it at once.
    with sqlite3.connect(path) as other:
        assert other.execute("select count(*) from inbound_messages").fetchone() == (1,)


def test_files_may_hold_what_a_gateway_refuses(store: MessageStore) -> None:
    garbage = b"not hl7 at all"
    no_id = adt("A01", "", "V1")
    receipts = store.store(
        [
            (hl7v2_inbound_bytes(garbage, "file", NOW), acks),
            (hl7v2_inbound_bytes(no_id, "file", NOW), acks),
            (hl7v2_inbound_bytes(adt("A01", "", "V2"), "file", NOW), acks),
        ]
    )
    # Each is its own message (no control id to tell them apart by): none is a conflict of another.
    assert [r.verdict for r in receipts] == [Verdict.NEW, Verdict.NEW, Verdict.NEW]
    pending = store.pending(store.epoch(), 10)
    assert pending[0].broker_key.startswith(b"undecodable|")
    assert pending[1].broker_key == b"EPIC^NMH|"  # keyed as before, so the ingest quarantines it as such


def test_digest_ignores_msh7_and_line_endings_only() -> None:
    raw = adt("A01", "C1", "V1")
    assert hl7v2_digest(raw) == hl7v2_digest(raw.replace(b"\r", b"\n") + b"\n\n")
    msh7 = raw.split(b"|")[6]
    assert hl7v2_digest(raw) == hl7v2_digest(raw.replace(msh7, b"20000101", 1))
    assert hl7v2_digest(raw) != hl7v2_digest(raw.replace(b"V1", b"V2"))


def test_outcome_batches_round_trip_to_store_updates() -> None:
    batch = OutcomeBatch(
        at=NOW,
        outcomes=(
            MessageOutcome(message_id="m1", key_b64="RVBJQ15OTUh8QzE=", outcome="mapped", event_ids=("e1",)),
            MessageOutcome(key_b64="", outcome="quarantined", exception_id="x", rule="HL7-PID3-MISSING"),
        ),
    )
    again = OutcomeBatch.model_validate_json(batch.model_dump_json())
    updates = again.updates()
    assert updates[0].broker_key == b"EPIC^NMH|C1" and updates[0].event_ids == ("e1",)
    assert (updates[1].message_id, updates[1].rule) == ("", "HL7-PID3-MISSING")
    assert message_id_of([(MESSAGE_ID_HEADER, b"abc")]) == "abc"
    assert message_id_of({MESSAGE_ID_HEADER: b"abc"}) == "abc"
    assert message_id_of(None) == "" and message_id_of([("other", b"x")]) == ""


def test_a_batch_of_outcomes_is_recorded_in_one_statement_each_message_its_own(store: MessageStore) -> None:
    receipts = store.store([(inbound(adt("A01", f"B{n}", f"V{n}"), NOW), acks) for n in range(5)])
    updates = [
        OutcomeUpdate(
            message_id=r.message_id,
            standard="hl7v2",
            broker_key=b"",
            outcome="mapped" if n % 2 else "routed",
            at=NOW,
            event_ids=(f"e{n}",),
        )
        for n, r in enumerate(receipts)
    ]
    assert store.record_outcomes(updates) == 5
    for n, receipt in enumerate(receipts):
        info = store.get(receipt.message_id)
        assert info is not None and info.outcome == ("mapped" if n % 2 else "routed")
        assert info.event_ids == (f"e{n}",)
