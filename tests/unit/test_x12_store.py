"""X12 interchanges in the message store: identity, resends, conflicts, found by ISA13, GS06 and ST02."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from adapters.inbound.forwarder import conflict_record
from adapters.inbound.store import MessageFilter, MessageStore, Verdict
from adapters.inbound.x12 import CONFLICT_RULE, x12_inbound
from canonical.x12.envelope import read_interchanges
from cluster.send import interchanges_of, messages_of, store_messages
from foundation.settings import Settings
from tests.hl7_samples import adt
from tests.x12_samples import interchange

AT = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)


def _no_ack(_verdict: Verdict, _first: object) -> None:
    return None


def test_an_interchange_is_described_by_its_envelope() -> None:
    [x] = read_interchanges(interchange().encode())
    inbound = x12_inbound(x, "file", AT)
    assert (inbound.standard, inbound.sender, inbound.control_id) == ("x12", "ZZ:SUBMITTER", "000000123")
    assert inbound.message_type == "837" and inbound.broker_key == b"ZZ:SUBMITTER|000000123"
    assert inbound.content == interchange().encode()
    assert [(e.group_control, e.set_control, e.set_code, e.guide) for e in inbound.envelope] == [
        ("77", "0001", "837", "005010X222A1"),
        ("77", "0002", "837", "005010X222A1"),
    ]
    assert inbound.visit_number == "" and inbound.patient_id == ""  # the envelope holds no PHI


def test_a_resend_restamped_or_with_other_line_ends_is_the_same_interchange() -> None:
    [first] = read_interchanges(interchange().encode())
    restamped = interchange().replace("*261205*1200*", "*261206*0900*", 1) + "\r\n"
    [again] = read_interchanges(interchange(after="\r\n").encode())
    [later] = read_interchanges(restamped.encode())
    digests = {x12_inbound(x, "file", AT).digest for x in (first, again, later)}
    assert len(digests) == 1
    [changed] = read_interchanges(interchange().replace("CLM*PATIENT-2*80", "CLM*PATIENT-2*81").encode())
    assert x12_inbound(changed, "file", AT).digest not in digests


def test_stored_interchanges_are_found_by_isa13_gs06_and_st02_and_conflicts_are_kept(tmp_path: Path) -> None:
    store = MessageStore(f"sqlite:///{tmp_path / 'messages.db'}")
    try:
        [x] = read_interchanges(interchange().encode())
        [other] = read_interchanges(interchange("000000124").replace("*77*", "*78*").encode())
        [changed] = read_interchanges(interchange().replace("CLM*PATIENT-2*80", "CLM*PATIENT-2*81").encode())
        items = [(x12_inbound(i, "file", AT), _no_ack) for i in (x, other, x, changed)]
        verdicts = [receipt.verdict for receipt in store.store(items)]
        assert verdicts == [Verdict.NEW, Verdict.NEW, Verdict.DUPLICATE, Verdict.CONFLICT]
        assert [i.control_id for i in store.list(MessageFilter(standard="x12", group_control="78"))] == [
            "000000124"
        ]
        found = store.list(MessageFilter(set_control="0002", state="pending"))
        assert {i.control_id for i in found} == {"000000123", "000000124"}
        assert store.count(MessageFilter(control_id="000000123")) == 2  # the first and its conflict
        [pending_conflict] = [p for p in store.pending(store.epoch(), 10) if p.conflict_of is not None]
        record = conflict_record(pending_conflict)
        assert (record.rule, record.segment, record.field) == (CONFLICT_RULE, "ISA", "ISA13")
        assert base64.b64decode(record.original_b64) == changed.text.encode()
    finally:
        store.close()


def test_send_stores_hl7_and_x12_files_together(tmp_path: Path) -> None:
    hl7 = tmp_path / "adt.hl7"
    hl7.write_bytes(adt("A01", "C1", "V1"))
    claims = tmp_path / "claims.txt"
    claims.write_bytes(b"\xef\xbb\xbf" + (interchange("000000001") + interchange("000000002")).encode())
    files = [hl7, claims]
    messages, interchanges = messages_of(files), interchanges_of(files)
    assert len(messages) == 1 and [x.control for x in interchanges] == ["000000001", "000000002"]
    store = MessageStore(f"sqlite:///{tmp_path / 'messages.db'}")
    try:
        settings = Settings(home_dir=tmp_path)
        report = store_messages(settings, messages, interchanges=interchanges, store=store)
        assert (report.stored, report.duplicates) == (3, 0)
        assert {i.standard for i in store.list(MessageFilter())} == {"hl7v2", "x12"}
        again = store_messages(settings, messages, interchanges=interchanges, store=store)
        assert (again.stored, again.duplicates) == (0, 3)
    finally:
        store.close()
