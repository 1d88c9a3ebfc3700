"""The revenue cycle on the running stack: HL7 in, eligibility, an 837 out, 999 and 835 back, posted.

An insured inpatient stay is sent as HL7 (A01 with IN1, charges, A03, BAR^P05). The stack checks the
coverage with the reference payer (270/271), builds the claim in billing once the stay is discharged and
coded, validates the 837 with pyx12 and sends it; the payer's 999 accepts it, its 835 comes back into
the inbox on the payer's schedule, and billing and the ERP post it. Then 835s that must not post: one
for a claim hcsync never sent, and the payer's own 835 sent again under another ISA13.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import uuid
from pathlib import Path

from adapters.clients import BillingClient
from adapters.payer.adjudication import PayerProfile, adjudicate, remit
from canonical.reference import PayerType
from canonical.x12.envelope import read_interchanges
from canonical.x12.read import ReadStatus, read_file
from canonical.x12.write import HCSYNC_DELIMITERS, Envelope, Parties
from canonical.x12.write_835 import write_835
from cluster.send import store_messages
from cluster.stack import Stack
from proto import billing_pb2
from streams.quarantine_store import QuarantineStore
from tests.hl7_samples import adt, bar, dft, in1, with_segments
from tests.integration.conftest import report_now, wait_until
from tests.unit.test_x12_write import EFT, PAYER_DETAILS, PROVIDER, SUBSCRIBER, institutional, submission

_SETTLED = {"paid", "partly_paid", "denied", "adjusted"}


def _claims(stack: Stack, encounter_id: str) -> list[billing_pb2.ClaimSummary]:
    async def read() -> list[billing_pb2.ClaimSummary]:
        async with BillingClient(stack.settings) as client:
            found = await client.list_claims(billing_pb2.ClaimListRequest(encounter_id=encounter_id))
            return list(found.claims)

    return asyncio.run(read())


def _quarantined(stack: Stack, rule: str) -> list[str]:
    store = QuarantineStore(f"sqlite:///{stack.run_dir / 'quarantine.db'}")
    try:
        return [item.reason for item in store.list(rule=rule)]
    finally:
        store.close()


def _stay(uid: str) -> list[bytes]:
    visit = f"RC{uid}"
    coverage = in1(f1="1", f2="PPO", f3="BCBS-MN", f4="Blue Cross", f8="GRP77", f17="SEL", f36=f"XY{uid}")
    return [
        with_segments(adt("A01", f"A{uid}", visit, dept="CARD"), coverage),
        dft(f"C{uid}", visit, [("CG", "93000", "ECG", 1, "95.00"), ("CG", "80053", "CMP", 1, "62.00")]),
        adt("A03", f"D{uid}", visit, dept="CARD", discharge="20261121090000", at="20261121090000"),
        bar("P05", f"B{uid}", visit),
    ]


def test_an_insured_stay_is_checked_billed_acknowledged_paid_and_journalled(stack: Stack) -> None:
    uid = uuid.uuid4().hex[:8].upper()
    settings = stack.settings
    encounter_id = f"NMH:RC{uid}"
    cash_before = report_now(settings).account_net_cents("1010")
    store_messages(settings, _stay(uid), channel="test")
    claims = wait_until(
        f"the claims of {encounter_id} paid or denied",
        lambda: _claims(stack, encounter_id),
        180,
        done=lambda found: bool(found) and all(c.status in _SETTLED for c in found),
        show=lambda found: [(c.claim_id, c.status) for c in found],
    )
    [claim] = claims
    assert claim.claim_type == "institutional" and claim.total_charge_cents == 15_700
    assert (
        claim.paid_cents + claim.adjusted_cents == claim.total_charge_cents and claim.outstanding_cents == 0
    )
    # The 835's journal reaches the ledger (commands.erp, behind billing's posting): cash, unless denied.
    report = wait_until(
        "the 835's cash in the ledger",
        lambda: report_now(settings),
        90,
        done=lambda r: claim.status == "denied" or r.account_net_cents("1010") > cash_before,
        show=lambda r: r.account_net_cents("1010"),
    )
    # The 271 answered the coverage (no follow-up).
    assert int(report.revenue_cycle.get("coverageCount", 0)) >= 1
    assert int(report.payer.get("eligibilityAnswered", 0)) >= 1
    # hcsync answered the payer's 835 (and 271) with 999s in its outbox.
    # (The outbox holds the session's other senders' 999s too: the file is named by whom it answers.)
    answered = sorted(
        p.name for p in (stack.run_dir / "outbox").glob(f"999-{settings.payer_interchange_id}-*.x12")
    )
    assert answered, "no 999 to the payer in the outbox"
    [ack] = read_interchanges((stack.run_dir / "outbox" / answered[-1]).read_bytes())
    assert ack.isa.element(8).strip() == settings.payer_interchange_id


def _foreign_835(uid: str, claim_id: str, trace: str) -> bytes:
    payer = PayerProfile("BCBS-MN", "Blue Cross", PayerType.COMMERCIAL)
    decided = adjudicate(submission(institutional(claim_id)), payer)
    remittance = remit(
        [decided], payer, payee_npi=PROVIDER.npi, trace_number=trace, paid_on=dt.date(2026, 12, 5)
    )
    envelope = Envelope(
        parties=Parties("ZZ", "OTHERPAYER", "ZZ", "HCSYNC", "OTHERPAYER", "HCSYNC"),
        interchange_control=int(uid[:9]),
        group_control=1,
        at=dt.datetime(2026, 12, 5, 15, tzinfo=dt.UTC),
        delimiters=HCSYNC_DELIMITERS,
    )
    patients = {claim_id: SUBSCRIBER}
    return write_835([remittance], PROVIDER, envelope, payer=PAYER_DETAILS, eft=EFT, patients=patients)


def test_an_835_for_a_claim_hcsync_never_sent_is_quarantined_whole(stack: Stack) -> None:
    uid = str(uuid.uuid4().int)[:9]
    inbox = stack.run_dir / "inbox"
    (inbox / f"remit-{uid}.835").write_bytes(_foreign_835(uid, f"NMH:NOPE{uid}I", f"T{uid}"))
    reasons = wait_until(
        "the 835 quarantined as X12-835-UNMATCHED-CLAIM",
        lambda: [r for r in _quarantined(stack, "X12-835-UNMATCHED-CLAIM") if f"T{uid}" in r],
        120,
        done=bool,
    )
    assert "claim 1" in reasons[0] and f"NOPE{uid}" not in reasons[0]  # named by ordinal, not its id
    assert any(p.name == f"remit-{uid}.835" for p in (inbox / "processed").rglob("*"))


def test_the_payers_835_sent_again_under_another_isa13_is_quarantined_and_posts_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    settings = stack.settings
    delivered = wait_until(
        "an 835 the payer delivered",
        lambda: sorted((stack.run_dir / "inbox" / "processed").rglob("835-*.x12")),
        180,
        done=bool,
    )
    original = delivered[0].read_bytes()
    [x] = read_interchanges(original)
    [reading] = read_file(original)
    assert reading.status is ReadStatus.MAPPED
    trace = reading.models[0].trace_number  # type: ignore[attr-defined]
    again = original.replace(x.control.encode(), b"987654321")  # ISA13 and IEA02: another interchange
    before = report_now(settings)
    shutil.copyfile(delivered[0], tmp_path / "copy")
    (stack.run_dir / "inbox" / "835-again.x12").write_bytes(again)
    wait_until(
        "the second 835 quarantined as X12-835-DUPLICATE-TRACE",
        lambda: [r for r in _quarantined(stack, "X12-835-DUPLICATE-TRACE") if trace in r],
        120,
        done=bool,
    )
    after = report_now(settings)
    assert after.account_net_cents("1010") == before.account_net_cents("1010")
    assert after.revenue_cycle.get("remittanceCount") == before.revenue_cycle.get("remittanceCount")
