"""Canonical revenue-cycle models into billing's requests: coverage, a 271's outcome, an 835.

The other way (a built claim into the canonical ClaimSubmission the 837 writer takes) is
:func:`adapters.billing.revenue_cycle.canonical_submission`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from google.protobuf.timestamp_pb2 import Timestamp

from canonical.models import Address, Patient
from canonical.revenue_cycle import (
    Adjustment,
    Benefit,
    Coverage,
    EligibilityResponse,
    Gender,
    Person,
    PostalAddress,
    Remittance,
    RemittanceClaim,
    RemittanceLine,
    SubscriberRelationship,
)
from proto import billing_pb2

__all__ = [
    "benefit_summary",
    "coverage_from",
    "eligibility_result_from",
    "postal_address",
    "remittance_from",
]


def _stamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(dt.UTC))
    return stamp


def _day(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def _address(address: PostalAddress | None) -> billing_pb2.PostalAddress | None:
    if address is None:
        return None
    return billing_pb2.PostalAddress(
        line1=address.line1,
        line2=address.line2,
        city=address.city,
        state=address.state,
        postal_code=address.postal_code,
    )


def _person(person: Person) -> billing_pb2.Person:
    message = billing_pb2.Person(
        member_id=person.member_id,
        family_name=person.family_name,
        given_name=person.given_name,
        birth_date=_day(person.birth_date),
        gender=person.gender.value,
    )
    address = _address(person.address)
    if address is not None:
        message.address.CopyFrom(address)
    return message


def coverage_from(
    coverage: Coverage,
    patient: Patient | None,
    *,
    source_event_id: str,
    correlation_id: str,
    state_version: int,
) -> billing_pb2.Coverage:
    """Billing's Coverage of a canonical one (HL7 IN1), with the patient's gender and address (PID-8,
    PID-11) for loop 2010CA; when the patient is the subscriber, theirs are the subscriber's too."""
    own = coverage.relationship is SubscriberRelationship.SELF and patient is not None
    gender = Gender.from_hl7(patient.sex) if patient else Gender.UNKNOWN
    address = postal_address(patient.address) if patient is not None else None
    subscriber = Person(
        member_id=coverage.member_id,
        family_name=coverage.subscriber_family_name or (patient.family_name if patient else ""),
        given_name=coverage.subscriber_given_name,
        birth_date=coverage.subscriber_birth_date,
        gender=gender if own else Gender.UNKNOWN,
        address=address if own else None,
    )
    message = billing_pb2.Coverage(
        encounter_id=coverage.encounter_id,
        payer_id=coverage.payer_id,
        plan=coverage.plan,
        priority=coverage.priority,
        subscriber=_person(subscriber),
        group_number=coverage.group_number,
        relationship=coverage.relationship.value,
        effective_on=_day(coverage.effective_on),
        expires_on=_day(coverage.expires_on),
        source_event_id=source_event_id,
        correlation_id=correlation_id,
        state_version=state_version,
        patient_gender=gender.value,
    )
    proto_address = _address(address)
    if proto_address is not None:
        message.patient_address.CopyFrom(proto_address)
    return message


def postal_address(address: Address | None) -> PostalAddress | None:
    """An HL7 address (PID-11) as X12 N3/N4 can carry it, or None when it cannot (no street, a state
    that is not two letters, a ZIP that is not 5 or 9 digits)."""
    if address is None:
        return None
    postal = address.postal_code.replace("-", "").strip()
    state = address.state.strip().upper()
    if not (address.street.strip() and address.city.strip() and len(state) == 2 and state.isalpha()):
        return None
    if not (postal.isdigit() and len(postal) in (5, 9)):
        return None
    return PostalAddress(
        line1=address.street.strip()[:55], city=address.city.strip()[:30], state=state, postal_code=postal
    )


def _basis_points(percent: str) -> int | None:
    """EB08 (a decimal fraction, 0.2 for 20 %) in hundredths of a percent; None when unreadable."""
    try:
        value = Decimal(percent)
    except (InvalidOperation, ValueError):
        return None
    if not 0 <= value <= 1:
        return None
    return int((value * 10_000).to_integral_value())


def benefit_summary(benefits: tuple[Benefit, ...]) -> billing_pb2.BenefitSummary:
    """What the patient owes, from the 271's EB segments: the first of each kind that says it.

    Deductible remaining is EB01 C with EB06 29 (remaining); out-of-pocket remaining is EB01 G with EB06 29
    (else the first G); copay is EB01 B; coinsurance EB01 A with its EB08.
    """
    summary = billing_pb2.BenefitSummary()
    for benefit in benefits:
        amount = benefit.amount_cents
        if benefit.code == "C" and benefit.period == "29" and amount is not None:
            if not summary.HasField("deductible_remaining_cents"):
                summary.deductible_remaining_cents = amount
        elif benefit.code == "G" and amount is not None and benefit.period in ("29", "23"):
            if not summary.HasField("out_of_pocket_remaining_cents") or benefit.period == "29":
                summary.out_of_pocket_remaining_cents = amount
        elif benefit.code == "B" and amount is not None and not summary.HasField("copay_cents"):
            summary.copay_cents = amount
        elif benefit.code == "A" and not summary.HasField("coinsurance_basis_points"):
            points = _basis_points(benefit.percent)
            if points is not None:
                summary.coinsurance_basis_points = points
    return summary


def eligibility_result_from(response: EligibilityResponse) -> billing_pb2.EligibilityResult:
    """Billing's EligibilityResult of a 271 answer."""
    return billing_pb2.EligibilityResult(
        status=response.status.value,
        plan=response.plan,
        benefits=benefit_summary(response.benefits),
        checked_at=_stamp(response.answered_at),
        trace_number=response.trace_number,
        rejection_reason=response.rejection_reason,
    )


def _adjustment(adjustment: Adjustment) -> billing_pb2.Adjustment:
    message = billing_pb2.Adjustment(
        group=adjustment.group.value, reason_code=adjustment.reason_code, amount_cents=adjustment.amount_cents
    )
    if adjustment.quantity is not None:
        message.quantity = adjustment.quantity
    return message


def _line(line: RemittanceLine) -> billing_pb2.RemittanceLine:
    message = billing_pb2.RemittanceLine(
        procedure_code=line.procedure_code,
        revenue_code=line.revenue_code,
        charge_cents=line.charge_cents,
        paid_cents=line.paid_cents,
        service_date=_day(line.service_date),
        line_control_number=line.line_control_number,
        adjustments=[_adjustment(a) for a in line.adjustments],
    )
    if line.units is not None:
        message.units = line.units
    return message


def _claim(claim: RemittanceClaim) -> billing_pb2.RemittanceClaim:
    return billing_pb2.RemittanceClaim(
        claim_id=claim.claim_id,
        status=claim.status.value,
        charge_cents=claim.charge_cents,
        paid_cents=claim.paid_cents,
        patient_responsibility_cents=claim.patient_responsibility_cents,
        payer_claim_control_number=claim.payer_claim_control_number,
        adjustments=[_adjustment(a) for a in claim.adjustments],
        lines=[_line(line) for line in claim.lines],
    )


def remittance_from(remittance: Remittance) -> billing_pb2.Remittance:
    """Billing's Remittance of a canonical 835 payment."""
    return billing_pb2.Remittance(
        payer_id=remittance.payer_id,
        payer_name=remittance.payer_name,
        payee_npi=remittance.payee_npi,
        trace_number=remittance.trace_number,
        payment_method=remittance.payment_method.value,
        payment_date=remittance.payment_date.isoformat(),
        total_paid_cents=remittance.total_paid_cents,
        currency=remittance.currency,
        claims=[_claim(c) for c in remittance.claims],
        provider_adjustments=[
            billing_pb2.ProviderAdjustment(
                reason_code=p.reason_code, reference=p.reference, amount_cents=p.amount_cents
            )
            for p in remittance.provider_adjustments
        ],
    )
