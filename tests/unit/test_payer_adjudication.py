"""The reference payer's decisions: balanced, reproducible, and with the mix a revenue cycle must handle."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from adapters.payer.adjudication import PayerProfile, adjudicate, answer_inquiry, remit
from canonical.reference import PayerType
from canonical.revenue_cycle import (
    AdjustmentGroup,
    Claim,
    ClaimLine,
    ClaimStatus,
    ClaimSubmission,
    ClaimType,
    EligibilityInquiry,
    EligibilityStatus,
    PayerParty,
    Person,
    PostalAddress,
    ProviderParty,
)

PROVIDER = ProviderParty(
    npi="1417921545",
    name="North Memorial Hospital",
    tax_id="410991234",
    address=PostalAddress(line1="3300 Oakdale Ave N", city="Northfield", state="MN", postal_code="550571234"),
)
MEDICARE = PayerProfile("MCR-A", "Medicare Part A", PayerType.MEDICARE)
COMMERCIAL = PayerProfile("BCBS-MN", "Blue Cross and Blue Shield of Minnesota", PayerType.COMMERCIAL)
MEDICAID = PayerProfile("MCD-MN", "Minnesota Medical Assistance", PayerType.MEDICAID)


def submission(
    claim_id: str, *, kind: ClaimType = ClaimType.INSTITUTIONAL, priority: int = 1
) -> ClaimSubmission:
    charges = [12_345, 99_999, 501, 250_000]
    lines = tuple(
        ClaimLine(
            line_number=n,
            revenue_code="0450" if kind is ClaimType.INSTITUTIONAL else "",
            procedure_code="99284",
            units=1,
            charge_cents=charge,
            service_date=dt.date(2026, 12, 1),
        )
        for n, charge in enumerate(charges, 1)
    )
    institutional = kind is ClaimType.INSTITUTIONAL
    claim = Claim(
        claim_id=claim_id,
        encounter_id=claim_id,
        claim_type=kind,
        facility_code="13" if institutional else "23",
        billing_provider_npi=PROVIDER.npi,
        payer_id="MCR-A",
        total_charge_cents=sum(charges),
        statement_from=dt.date(2026, 12, 1) if institutional else None,
        statement_to=dt.date(2026, 12, 2) if institutional else None,
        diagnosis_codes=("R079",),
        lines=lines,
    )
    return ClaimSubmission(
        claim=claim,
        billing_provider=PROVIDER,
        payer=PayerParty(payer_id="MCR-A", name="Medicare Part A"),
        subscriber=Person(member_id="M1", family_name="Doe", given_name="Jane"),
        priority=priority,
    )


def test_every_decision_balances_and_is_the_same_on_every_run() -> None:
    for payer in (MEDICARE, COMMERCIAL, MEDICAID):
        for n in range(300):
            sub = submission(
                f"V{n:06d}I", kind=ClaimType.PROFESSIONAL if n % 3 == 0 else ClaimType.INSTITUTIONAL
            )
            first = adjudicate(sub, payer)  # the canonical model refuses anything that does not balance
            assert adjudicate(sub, payer) == first
            assert first.charge_cents == sub.claim.total_charge_cents
            assert 0 <= first.paid_cents <= first.charge_cents
            assert all(0 <= line.paid_cents <= line.charge_cents for line in first.lines)
            pr = sum(
                a.amount_cents
                for line in first.lines
                for a in line.adjustments
                if a.group is AdjustmentGroup.PATIENT_RESPONSIBILITY
            )
            assert first.patient_responsibility_cents == pr


def test_the_mix_has_denials_write_offs_and_patient_responsibility() -> None:
    decisions = [adjudicate(submission(f"V{n:06d}I"), COMMERCIAL) for n in range(1_200)]
    statuses = Counter(d.status for d in decisions)
    assert 40 <= statuses[ClaimStatus.DENIED] <= 170, statuses  # about 1 in 12
    denied = [d for d in decisions if d.status is ClaimStatus.DENIED]
    assert all(d.paid_cents == 0 for d in denied)
    reasons = {a.reason_code for d in denied for line in d.lines for a in line.adjustments}
    assert reasons == {"50", "197", "29", "27"}
    paid = [d for d in decisions if d.status is ClaimStatus.PRIMARY]
    codes = Counter((a.group, a.reason_code) for d in paid for line in d.lines for a in line.adjustments)
    assert codes[(AdjustmentGroup.CONTRACTUAL, "45")] and codes[(AdjustmentGroup.PATIENT_RESPONSIBILITY, "2")]
    assert codes[(AdjustmentGroup.PATIENT_RESPONSIBILITY, "1")]  # some claims meet a deductible
    # Commercial allows 62 %: the payer pays well under the charge, and more than nothing.
    share = sum(d.paid_cents for d in paid) / sum(d.charge_cents for d in paid)
    assert 0.3 < share < 0.62


def test_secondary_coverage_and_copays() -> None:
    secondary = adjudicate(submission("V1S", priority=2), MEDICAID)
    assert secondary.status in (ClaimStatus.SECONDARY, ClaimStatus.DENIED)
    copays = [
        adjudicate(submission(f"P{n}", kind=ClaimType.PROFESSIONAL), MEDICAID) for n in range(200)
    ]  # Medicaid has no coinsurance here: professional claims carry a copay
    assert any(a.reason_code == "3" for d in copays for line in d.lines for a in line.adjustments)


def test_a_remittance_balances_with_its_provider_level_adjustments() -> None:
    claims = [adjudicate(submission(f"V{n:06d}I"), MEDICARE) for n in range(8)]
    seen = Counter()
    for n in range(120):
        remittance = remit(
            claims, MEDICARE, payee_npi=PROVIDER.npi, trace_number=f"T{n}", paid_on=dt.date(2026, 12, 5)
        )
        assert remittance.total_paid_cents == sum(c.paid_cents for c in claims) - sum(
            p.amount_cents for p in remittance.provider_adjustments
        )
        for adjustment in remittance.provider_adjustments:
            seen[adjustment.reason_code] += 1
    assert seen["WO"] and seen["L6"]
    assert 5 <= sum(seen.values()) <= 45  # about 1 in 6


def test_eligibility_answers_active_inactive_and_not_found() -> None:
    outcomes = Counter()
    for n in range(600):
        inquiry = EligibilityInquiry(
            trace_number=f"T{n}",
            payer=PayerParty(payer_id="BCBS-MN", name="Blue Cross"),
            provider=PROVIDER,
            subscriber=Person(member_id=f"XYZ{n:09d}", family_name="Doe"),
            inquired_on=dt.date(2026, 12, 5),
        )
        answer = answer_inquiry(inquiry, "PPO", dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC))
        assert answer == answer_inquiry(inquiry, "PPO", dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC))
        assert answer.trace_number == f"T{n}"
        outcomes[(answer.status, answer.rejection_reason)] += 1
        if answer.status is EligibilityStatus.ACTIVE:
            assert {b.code for b in answer.benefits} >= {"1", "C", "A", "B", "G"}
    assert outcomes[(EligibilityStatus.ACTIVE, "")] > 450
    assert outcomes[(EligibilityStatus.INACTIVE, "")] > 10
    assert outcomes[(EligibilityStatus.UNKNOWN, "75")] > 5
