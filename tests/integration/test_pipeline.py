"""End to end on the real embedded stack: HL7 in, billing and ERP postings out."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from canonical.quarantine import ExceptionRecord
from cluster.report import StackReport
from cluster.send import StoreReport, send_messages, store_messages
from cluster.stack import Stack
from foundation.kafka import producer
from foundation.keys import keyed
from foundation.settings import Settings
from foundation.topics import TopicNames
from tests.hl7_samples import a40, a45, adt, bar, bar_p12, dft, dft_p11, person, ras
from tests.integration.conftest import (
    charges,
    report_now,
    settle,
    wait_for_charges,
    wait_for_counter,
    wait_until,
)
from tests.masterdata import demo_set


def _uid() -> str:
    return uuid.uuid4().hex[:10].upper()


def _send(settings: Settings, *messages: bytes) -> None:
    assert asyncio.run(send_messages(settings, list(messages))) == len(messages)


def _exceptions(settings: Settings) -> list[ExceptionRecord]:
    async def read() -> list[ExceptionRecord]:
        consumer = AIOKafkaConsumer(
            TopicNames(settings.topic_prefix).exceptions,
            bootstrap_servers=settings.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=3000, max_records=10_000)
            return [ExceptionRecord.model_validate_json(m.value) for ms in batches.values() for m in ms]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_admission_and_charges_reach_billing_and_erp(settings: Settings) -> None:
    before = settle(settings, 1.0)
    visit = f"V{_uid()}"
    _send(
        settings,
        adt("A01", f"A{visit}", visit),
        dft(
            f"D{visit}",
            visit,
            [("CG", "99283", "ED visit", 1, "350.00"), ("CG", "80053", "Metabolic panel", 1, "75.25")],
        ),
        adt("A03", f"X{visit}", visit, discharge="20261121100000"),
    )
    wait_for_charges(settings, "the admission's two charges", count=charges(before)[0] + 2)
    after = settle(settings)
    assert charges(after)[0] - charges(before)[0] == 2
    assert charges(after)[1] - charges(before)[1] == 42_525
    assert after.revenue_net_cents - before.revenue_net_cents == 42_525
    assert after.receivables_net_cents - before.receivables_net_cents == 42_525
    assert int(after.ledger["lineCount"]) - int(before.ledger.get("lineCount", 0)) == 4
    assert int(after.ledger["totalDebitCents"]) == int(after.ledger["totalCreditCents"])
    assert int(after.billing["accountCount"]) - int(before.billing.get("accountCount", 0)) == 1


def test_duplicated_message_is_posted_once(settings: Settings) -> None:
    before = settle(settings, 1.0)
    visit = f"V{_uid()}"
    charge = dft(f"D{visit}", visit, [("CG", "93000", "ECG", 1, "120.00")])
    _send(settings, adt("A04", f"A{visit}", visit, patient_class="O"), charge)
    first = wait_for_charges(settings, "the first posting", count=charges(before)[0] + 1)
    # Resent: the message store knows it, and nothing reaches the broker again.
    assert store_messages(settings, [charge, charge]) == StoreReport(stored=0, duplicates=2, conflicts=0)
    # Delivered again all the same (as a replay from the quarantine does, straight to the raw topic): the
    # encounter table drops the repeated event.
    asyncio.run(_publish_raw(settings, charge))
    wait_for_counter(settings, "duplicate_events", first.counters["duplicate_events"] + 1)
    after = settle(settings)
    assert charges(after)[0] - charges(before)[0] == 1
    assert charges(after)[1] - charges(before)[1] == 12_000
    assert int(after.ledger["lineCount"]) - int(before.ledger.get("lineCount", 0)) == 2


async def _publish_raw(settings: Settings, raw: bytes) -> None:
    kafka = producer(settings)
    await kafka.start()
    try:
        await kafka.send_and_wait(TopicNames(settings.topic_prefix).raw_hl7v2, value=raw, key=keyed(raw))
    finally:
        await kafka.stop()


def test_malformed_message_is_quarantined_and_pipeline_goes_on(settings: Settings) -> None:
    before = settle(settings, 1.0)
    bad_visit, good_visit = f"V{_uid()}", f"V{_uid()}"
    bad = dft(f"B{bad_visit}", bad_visit, [("CG", "99283", "ED visit", 1, "3x0.00")])
    _send(
        settings,
        adt("A01", f"A{bad_visit}", bad_visit),
        bad,
        b"NOT HL7 AT ALL\r",
        adt("A01", f"A{good_visit}", good_visit),
        dft(f"D{good_visit}", good_visit, [("CG", "71046", "Chest x-ray", 1, "210.00")]),
    )
    wait_for_charges(settings, "the good charge", count=charges(before)[0] + 1)
    after = settle(settings)
    assert charges(after)[1] - charges(before)[1] == 21_000
    every = _exceptions(settings)
    # Keyed by message id for the bad DFT; the undecodable record has none, like others in the session.
    records = {r.source_message_id: r for r in every}
    record = records[f"B{bad_visit}"]
    assert record.rule == "HL7-FT1-11-AMOUNT"
    assert (record.segment, record.field, record.position, record.found) == ("FT1", "FT1-11", 4, "3x0.00")
    assert record.encounter_id == f"NMH:{bad_visit}"
    assert base64.b64decode(record.original_b64) == bad
    assert any(r.rule == "HL7-MSH-MISSING" and r.original == b"NOT HL7 AT ALL\r" for r in every)
    assert after.counters["quarantined"] - before.counters["quarantined"] >= 2


def test_charge_before_admission_posts_after_it(settings: Settings) -> None:
    before = settle(settings, 1.0)
    visit = f"V{_uid()}"
    _send(settings, dft(f"D{visit}", visit, [("CG", "99285", "ED visit level 5", 1, "980.00")]))
    wait_for_counter(settings, "held_charges", before.counters["held_charges"] + 1)
    held = settle(settings, 1.0)
    assert charges(held) == charges(before)
    _send(settings, adt("A01", f"A{visit}", visit, patient_class="E", dept="ED"))
    wait_for_charges(settings, "the held charge", count=charges(before)[0] + 1)
    after = settle(settings)
    assert charges(after)[1] - charges(before)[1] == 98_000
    assert after.revenue_net_cents - before.revenue_net_cents == 98_000


def test_report_json_cli(settings: Settings) -> None:
    import os
    import subprocess
    import sys

    from cluster.stack import settings_env

    out = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "report", "--json"],
        env=os.environ | settings_env(settings),
        capture_output=True,
        check=True,
        timeout=60,
    )
    data = json.loads(out.stdout)
    assert data["topics"]["raw.hl7v2"] >= data["counters"]["raw_in"] > 0
    assert "accountCount" in data["billing"] and "byAccount" in data["ledger"]


def test_poison_records_downstream_are_quarantined(settings: Settings) -> None:
    from aiokafka import AIOKafkaProducer

    names = TopicNames(settings.topic_prefix)
    visit = f"V{_uid()}"

    async def inject() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(names.events, b'{"event_id": "broken"}', key=f"NMH:{visit}".encode())
            await producer.send_and_wait(
                names.billing, b'{"kind": "post_charge"}', key=f"NMH:{visit}".encode()
            )
            await producer.send_and_wait(names.erp, b"not json", key=f"NMH:{visit}".encode())
        finally:
            await producer.stop()

    before = settle(settings, 1.0)
    asyncio.run(inject())
    _send(
        settings,
        adt("A01", f"A{visit}", visit),
        dft(f"D{visit}", visit, [("CG", "36415", "Venipuncture", 1, "15.00")]),
    )
    wait_for_charges(settings, "the charge after the poison", cents=charges(before)[1] + 1_500)
    rules = {}
    for record in _exceptions(settings):
        rules.setdefault((record.stage, record.rule), record)
    assert ("encounters", "CANONICAL-INVALID") in rules
    assert ("billing", "COMMAND-INVALID") in rules
    assert ("erp", "COMMAND-INVALID") in rules
    assert rules[("erp", "COMMAND-INVALID")].original == b"not json"


def test_quarantined_message_is_stored_fixed_and_replayed_once(stack: Stack, settings: Settings) -> None:
    import os
    import subprocess
    import sys

    from cluster.stack import settings_env

    env = os.environ | settings_env(settings.model_copy(update={"run_dir": stack.run_dir}))

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "cluster.cli", *args],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )

    visit = f"V{_uid()}"
    broken = dft(f"Q{visit}", visit, [("CG", "99284", "ED visit level 4", 1, "4o0.00")])
    before = settle(settings, 1.0)
    _send(settings, adt("A01", f"A{visit}", visit), broken)

    def stored() -> list[dict[str, object]]:
        out = cli("exceptions", "list", "--json", "--status", "all", "--message-id", f"Q{visit}")
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    [item] = wait_until(
        f"the quarantine store to hold the broken DFT Q{visit} once", stored, done=lambda s: len(s) == 1
    )
    assert item["rule"] == "HL7-FT1-11-AMOUNT" and item["field"] == "FT1-11" and item["status"] == "open"
    shown = cli("exceptions", "show", str(item["record_id"]), "--raw")
    assert shown.returncode == 0 and shown.stdout == broken

    fixed = Path(stack.run_dir) / f"fixed-{visit}.hl7"
    fixed.write_bytes(broken.replace(b"4o0.00", b"400.00"))
    replayed = cli("exceptions", "replay", str(item["record_id"]), "--with-file", str(fixed), "--yes")
    assert replayed.returncode == 0, replayed.stderr
    wait_for_charges(settings, "the fixed charge", cents=charges(before)[1] + 40_000)
    again = cli("exceptions", "replay", str(item["record_id"]), "--with-file", str(fixed), "--yes")
    assert again.returncode == 0, again.stderr
    after = settle(settings)
    assert charges(after)[1] - charges(before)[1] == 40_000
    assert charges(after)[0] - charges(before)[0] == 1
    assert stored()[0]["status"] == "replayed"


def test_send_over_mllp_waits_for_acks_and_posts(settings: Settings, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from cluster.stack import settings_env

    visit = f"V{_uid()}"
    path = tmp_path / "feed.hl7"
    path.write_bytes(
        adt("A04", f"M{visit}", visit, patient_class="O")
        + dft(f"N{visit}", visit, [("CG", "93005", "ECG tracing", 1, "55.00")])
    )
    before = settle(settings, 1.0)
    out = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "send", str(path), "--mllp", f"127.0.0.1:{settings.mllp_port}"],
        env=os.environ | settings_env(settings),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert b"2 of 2" in out.stdout
    wait_for_charges(settings, "the MLLP charge", cents=charges(before)[1] + 5_500)
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(b"MSH|^~\\&|EPIC|NMH|HCSYNC|HCSYNC|20261120||ADT^A01|||2.5.1\r")
    refused = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "send", str(bad), "--mllp", f"127.0.0.1:{settings.mllp_port}"],
        env=os.environ | settings_env(settings),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 1
    assert b"AR" in refused.stderr


def _status_counts(report: StackReport) -> dict[str, int]:
    return {row["status"]: int(row.get("accountCount", 0)) for row in report.billing.get("byStatus", [])}


def _stock(report: StackReport, facility: str, item: str) -> int:
    rows = report.inventory_rows()
    return sum(row.net_milli for row in rows if (row.facility, row.item_code) == (facility, item))


def test_every_financial_message_type_reaches_its_sink(settings: Settings) -> None:
    """ADT cancel, BAR coding, RAS doses, supply charges and reversals, a merge, and a routed ORU."""
    before = settle(settings, 1.0)
    uid = _uid()
    visit, other = f"V{uid}", f"W{uid}"
    # Items of the shipped item master: other tests use them too, so stock is compared as a change.
    drug, supply = "00409-4888-01", "SUP1004"
    drug_before, supply_before = _stock(before, "NMH", drug), _stock(before, "NMH", supply)
    oru = (
        f"MSH|^~\\&|LAB|NMH|HCSYNC|HCSYNC|20261120083000||ORU^R01^ORU_R01|L{uid}|P|2.5.1\r"
        f"PID|1||MRN{uid}^^^NMH^MR||Doe^Jane\rPV1|1|I|MEDSURG^1^A^NMH||||||||||||||||{visit}^^^NMH^VN\r"
        "OBX|1|NM|2345-7^Glucose^LN||98|mg/dL||||F\r"
    ).encode()
    _send(
        settings,
        # The cancel of the discharge is sent first: the status must still end "admitted".
        adt("A13", f"C{uid}", visit, mrn=f"MRN{uid}", at="20261121120000"),
        adt("A01", f"A{uid}", visit, mrn=f"MRN{uid}", at="20261121080000"),
        adt("A03", f"X{uid}", visit, mrn=f"MRN{uid}", at="20261121100000", discharge="20261121100000"),
        bar("P05", f"B{uid}", visit, diagnoses=("I21.4", "E11.9"), procedures=("92928",)),
        ras(f"S{uid}", visit, [("1", "2.5", "CP"), ("2", "1", "RE")], drug=drug),
        dft(
            f"D{uid}",
            visit,
            [("CG", supply, "Dressing", 2, "8.00"), ("CG", supply, "Dressing", -1, "4.00")],
            code_system="SUPPLY",
        ),
        adt("A04", f"R{uid}", other, mrn=f"OLD{uid}", patient_class="O"),
        oru,
    )

    def progress() -> dict[str, int]:
        now = report_now(settings)
        return {
            "drug milli": _stock(now, "NMH", drug) - drug_before,
            "supply milli": _stock(now, "NMH", supply) - supply_before,
            "coded accounts": int(now.billing.get("codedAccountCount", 0))
            - int(before.billing.get("codedAccountCount", 0)),
            "charges": charges(now)[0] - charges(before)[0],
        }

    wait_until(
        "coding, stock and charges: drug milli 2500, supply milli 1000, at least 1 coded account, "
        "at least 2 charges (changes)",
        progress,
        done=lambda seen: (
            (seen["drug milli"], seen["supply milli"]) == (2500, 1000)
            and seen["coded accounts"] >= 1
            and seen["charges"] >= 2
        ),
    )
    # The merge goes last, so the account it moves exists (billing also handles the other order).
    _send(settings, a40(f"M{uid}", f"NEW{uid}", f"OLD{uid}"))
    merged = int(before.billing.get("mergedAccountCount", 0))
    wait_until(
        f"the merge: mergedAccountCount above {merged}",
        lambda: int(report_now(settings).billing.get("mergedAccountCount", 0)),
        done=lambda seen: seen > merged,
    )
    after = settle(settings)

    def delta(name: str) -> int:
        return int(after.billing.get(name, 0)) - int(before.billing.get(name, 0))

    assert (delta("codedAccountCount"), delta("diagnosisCount"), delta("procedureCount")) == (1, 2, 1)
    assert (delta("mergeCount"), delta("mergedAccountCount")) == (1, 1)
    statuses = {k: v - _status_counts(before).get(k, 0) for k, v in _status_counts(after).items()}
    assert statuses.get("admitted", 0) == 1 and statuses.get("discharged", 0) == 0
    assert charges(after)[1] - charges(before)[1] == 400
    assert after.counters["ignored"] - before.counters["ignored"] >= 1
    assert after.counters.get("type:ORU^R01", 0) - before.counters.get("type:ORU^R01", 0) == 1
    assert _stock(after, "NMH", drug) - drug_before == 2500
    assert _stock(after, "NMH", supply) - supply_before == 1000
    # Valued at the item master's standard cost, each movement rounded half up to the cent.
    costs = {code: demo_set().item(code) for code in (drug, supply)}
    assert all(item is not None for item in costs.values())

    def value(milli: int, code: str) -> int:
        item = costs[code]
        assert item is not None
        return (milli * item.unit_cost_cents + 500) // 1000

    expected_value = value(2500, drug) + value(2000, supply) - value(1000, supply)
    valued = int(after.inventory.get("valueCents", 0)) - int(before.inventory.get("valueCents", 0))
    assert valued == expected_value


def test_issue_11_types_reach_billing_and_nothing_financial_is_routed(settings: Settings) -> None:
    """DFT^P11 charges and coding, BAR^P12 changes, an A16 that is no discharge, an A31 on every account,
    an A45 visit move, and an ORM with FT1 charges quarantined instead of routed."""
    before = settle(settings, 1.0)
    uid = _uid()
    visit, second = f"V{uid}", f"W{uid}"
    mrn, other = f"MRN{uid}", f"NEW{uid}"
    orm = (
        f"MSH|^~\\&|LAB|NMH|HCSYNC|HCSYNC|20261120083000||ORM^O01^ORM_O01|O{uid}|P|2.5.1\r"
        f"PID|1||{mrn}^^^NMH^MR||Doe^Jane\rPV1|1|I|MEDSURG^1^A^NMH||||||||||||||||{visit}^^^NMH^VN\r"
        "ORC|NW|ORD1\rOBR|1|ORD1||80053^CMP^CPT\r"
        "FT1|1|T1||20261120083000||CG|80053^Metabolic panel^CPT||Metabolic panel|1|75.25\r"
    ).encode()
    _send(
        settings,
        adt("A01", f"A{uid}", visit, mrn=mrn, at="20261121080000"),
        adt("A04", f"R{uid}", second, mrn=mrn, patient_class="O", at="20261121081000"),
        adt("A16", f"P{uid}", visit, mrn=mrn, at="20261121090000", discharge="20261121150000"),
        dft_p11(
            f"F{uid}",
            visit,
            [
                ("CG", "99213", "Office visit", 1, "120.00", ("99213",), ("J20.9",)),
                ("CG", "71046", "Chest X-ray", 1, "85.50", ("71046",), ()),
            ],
            dept="MEDSURG",
            diagnoses=("R05.9",),
        ),
        bar(
            "P05", f"B{uid}", visit, diagnoses=("I21.4", "E11.9"), procedures=("92928",), at="20261121100000"
        ),
        bar_p12(f"Q{uid}", visit, diagnoses=(("E11.9", "", "D"), ("N18.3", "", "A")), at="20261121110000"),
        orm,
    )

    def arrived() -> bool:
        now = report_now(settings)
        return (
            charges(now)[0] >= charges(before)[0] + 2
            and int(now.billing.get("codedAccountCount", 0)) > int(before.billing.get("codedAccountCount", 0))
            and now.counters.get("quarantined", 0) > before.counters.get("quarantined", 0)
        )

    wait_until("the charges, the coding and the quarantined ORM", arrived)
    # Patient-level events last, so the accounts they change exist (billing also handles the other order).
    _send(
        settings,
        person("A31", f"U{uid}", mrn=mrn, family="Renamed", at="20261121120000"),
        a45(f"M{uid}", other, mrn, (second,), at="20261121130000"),
    )
    wait_until(
        "the person update and the move",
        lambda: (
            int(report_now(settings).billing.get("movedAccountCount", 0))
            > int(before.billing.get("movedAccountCount", 0))
        ),
    )
    after = settle(settings)

    def delta(name: str) -> int:
        return int(after.billing.get(name, 0)) - int(before.billing.get(name, 0))

    assert charges(after)[1] - charges(before)[1] == 20_550
    assert after.revenue_net_cents - before.revenue_net_cents == 20_550
    # The P05 full coding (I21.4, E11.9; 92928) then the P12: E11.9 deleted, N18.3 added; the DFT's coding
    # (R05.9, J20.9; 99213, 71046) came earlier and was replaced by the P05 (it is older).
    assert (delta("codedAccountCount"), delta("diagnosisCount"), delta("procedureCount")) == (1, 2, 1)
    assert (delta("patientUpdateCount"), delta("accountMoveCount"), delta("movedAccountCount")) == (1, 1, 1)
    statuses = {k: v - _status_counts(before).get(k, 0) for k, v in _status_counts(after).items()}
    assert statuses.get("admitted", 0) == 1 and statuses.get("discharged", 0) == 0, statuses
    [record] = [r for r in _exceptions(settings) if r.source_message_id == f"O{uid}"]
    assert (record.rule, record.segment, record.field) == ("HL7-UNMAPPED-FINANCIAL", "FT1", "FT1-7")
    assert after.counters.get("type:DFT^P11", 0) - before.counters.get("type:DFT^P11", 0) == 1
