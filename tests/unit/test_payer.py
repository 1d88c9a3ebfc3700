"""The reference payer over X12: 270 to 271, 837 to 999, claims paid later by 835 delivered as files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.payer.adjudication import PayerProfile
from adapters.payer.payer import ReferencePayer
from adapters.payer.store import PayerStore
from canonical.errors import InvalidMessageError
from canonical.reference import PayerType
from canonical.revenue_cycle import (
    EligibilityInquiry,
    EligibilityResponse,
    EligibilityStatus,
    Remittance,
)
from canonical.x12.acks import read_acknowledgment
from canonical.x12.envelope import read_interchanges
from canonical.x12.read import ReadStatus, read_file
from canonical.x12.write_837 import write_837
from canonical.x12.write_eligibility import write_270
from foundation.settings import Settings
from tests.unit.test_x12_write import (
    INPATIENT,
    PAYER,
    PROVIDER,
    SUBSCRIBER,
    envelope,
    institutional,
    professional,
    submission,
)


def _payers(payer_id: str, name: str) -> PayerProfile:
    return PayerProfile(payer_id, name, PayerType.COMMERCIAL)


@pytest.fixture
def payer(tmp_path: Path) -> Iterator[ReferencePayer]:
    settings = Settings(run_dir=tmp_path, payer_adjudication_delay_s=0.0)
    payer = ReferencePayer(
        settings, PayerStore(f"sqlite:///{tmp_path / 'payer.db'}"), _payers, tmp_path / "inbox"
    )
    yield payer
    payer.close()


def _inquiry(n: int) -> EligibilityInquiry:
    return EligibilityInquiry(
        trace_number=f"TRACE{n:04d}",
        payer=PAYER,
        provider=PROVIDER,
        subscriber=SUBSCRIBER.model_copy(update={"member_id": f"M{n:09d}"}),
        inquired_on=dt.date(2026, 12, 5),
    )


def _models(data: bytes) -> list[object]:
    readings = read_file(data)
    assert all(r.status is ReadStatus.MAPPED for r in readings), [r.describe() for r in readings]
    return [m for r in readings for m in r.models]


def test_a_270_is_answered_with_a_271_per_inquiry_and_a_resend_gets_the_same_answer(
    payer: ReferencePayer,
) -> None:
    request = write_270([_inquiry(n) for n in range(5)], envelope(interchange_control=900))
    [answer] = payer.eligibility(request)
    responses = _models(answer)
    assert all(isinstance(r, EligibilityResponse) for r in responses)
    assert sorted(r.trace_number for r in responses) == [f"TRACE{n:04d}" for n in range(5)]  # type: ignore[attr-defined]
    assert {r.status for r in responses} <= set(EligibilityStatus)  # type: ignore[attr-defined]
    assert payer.eligibility(request) == [answer]
    with pytest.raises(InvalidMessageError, match="ISA13"):
        payer.eligibility(write_270([_inquiry(7)], envelope(interchange_control=900)))


def test_an_837_gets_a_999_and_its_claims_are_paid_by_an_835_delivered_into_the_inbox(
    payer: ReferencePayer, tmp_path: Path
) -> None:
    subs = [submission(professional(f"P{n}", seed=n)) for n in range(6)] + [
        submission(institutional("I1"), dependent=True)
    ]
    request = write_837(subs, envelope(interchange_control=1000), codes={"I1": INPATIENT})
    answers = payer.claims(request)
    [ack] = [read_acknowledgment(x) for a in answers for x in read_interchanges(a)]
    assert {s.verdict for g in ack.groups for s in g.sets} == {"A"}, ack
    assert payer.claims(request) == answers  # a resend is not a second set of claims
    assert payer.store.counts()["claims_held"] == 7
    issued = payer.remit_due(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert len(issued) == 1
    files = sorted((tmp_path / "inbox").iterdir())
    assert [f.name for f in files] == [f"835-{PAYER.payer_id}-{issued[0]}.x12"]
    [remittance] = _models(files[0].read_bytes())
    assert isinstance(remittance, Remittance)
    assert sorted(c.claim_id for c in remittance.claims) == sorted(s.claim.claim_id for s in subs)
    by_id = {s.claim.claim_id: s.claim.total_charge_cents for s in subs}
    assert all(c.charge_cents == by_id[c.claim_id] for c in remittance.claims)
    # Paid once: nothing more is due, and the counts say so.
    assert payer.remit_due(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)) == []
    counts = payer.store.counts()
    assert (
        counts["claims_held"] == 0 and counts["claims_remitted"] == 7 and counts["remittances_delivered"] == 1
    )


def test_an_837_pyx12_rejects_gets_a_999_r_and_no_claim_is_kept(payer: ReferencePayer) -> None:
    request = write_837([submission(professional("P1"))], envelope(interchange_control=1001))
    broken = request.replace(b"*HC:9921", b"*ZZ:9921", 1)  # SV101-1: no such product/service id qualifier
    answers = payer.claims(broken)
    [ack] = [read_acknowledgment(x) for a in answers for x in read_interchanges(a)]
    assert {s.verdict for g in ack.groups for s in g.sets} == {"R"}
    assert payer.store.counts()["claims_held"] == 0


def test_a_slow_share_answers_after_the_deadline(tmp_path: Path) -> None:
    slept: list[float] = []
    settings = Settings(run_dir=tmp_path, payer_slow_share=1.0, payer_timeout_s=3.0)
    payer = ReferencePayer(
        settings, PayerStore(f"sqlite:///{tmp_path / 'p.db'}"), _payers, tmp_path / "in", sleep=slept.append
    )
    try:
        payer.eligibility(write_270([_inquiry(1)], envelope(interchange_control=5)))
        assert slept == [4.0]
    finally:
        payer.close()
