"""How the reference payer decides: eligibility answers and claim adjudication, deterministic per input.

The embedded stack's payer stands in for the clearinghouses and payers a hospital deals with, so the
revenue cycle can run end to end on one machine. Its decisions look like real ones and are reproducible:
every choice is drawn from a digest of the claim id (or member id) and the payer, never from a clock or
an unseeded random source, so the same claim always gets the same remittance and a demo reconciles to the
cent on every run.

Claims (one 835 claim per 837 claim, line by line):

* about 1 in 12 claims is **denied** (CLP02 4): nothing is paid, and each line's charge is adjusted with
  one reason: CO 50 (not medically necessary), CO 197 (no precertification), CO 29 (filed late) or PR 27
  (coverage ended: the patient owes it);
* the others are **paid** (CLP02 1, 2 or 3 by the coverage's priority): the payer allows a share of each
  line's charge that depends on its kind (Medicare 42 %, Medicaid 35 %, commercial 62 %) and writes the rest
  off as CO 45 (charge exceeds the fee schedule); of the allowed amount the patient owes a deductible
  (PR 1, on some claims), coinsurance (PR 2, 20 % for Medicare and commercial) or a copay (PR 3, on
  professional claims); the payer pays the remainder.

Every line balances (SVC02 - SVC03 = its CAS), and so does every claim; the 835 writer adds up BPR02 from
the claims and any provider-level adjustment (PLB). A PLB appears on about 1 in 6 remittances: an
overpayment recovery (WO, withheld) or interest paid on a late claim (L6, a negative amount).

Eligibility: about 1 in 12 members is inactive (EB01 6), 1 in 25 is not found (AAA 75), the rest are active
with a plan, a deductible, its remaining amount, coinsurance, a copay and an out-of-pocket maximum.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from canonical.reference import PayerType
from canonical.revenue_cycle import (
    Adjustment,
    AdjustmentGroup,
    Benefit,
    ClaimStatus,
    ClaimSubmission,
    ClaimType,
    EligibilityInquiry,
    EligibilityResponse,
    EligibilityStatus,
    PaymentMethod,
    ProviderAdjustment,
    Remittance,
    RemittanceClaim,
    RemittanceLine,
)

__all__ = [
    "ALLOWED_SHARE",
    "DENIALS",
    "PayerProfile",
    "adjudicate",
    "answer_inquiry",
    "remit",
]

# Share of a line's charge the payer allows, in basis points, by the payer's kind.
ALLOWED_SHARE: dict[PayerType, int] = {
    PayerType.MEDICARE: 4_200,
    PayerType.MEDICAID: 3_500,
    PayerType.COMMERCIAL: 6_200,
    PayerType.MANAGED_CARE: 5_800,
    PayerType.WORKERS_COMP: 7_000,
    PayerType.SELF_PAY: 10_000,
    PayerType.OTHER: 5_000,
}
# Coinsurance the patient owes on the allowed amount, in basis points (0: a copay plan instead).
_COINSURANCE: dict[PayerType, int] = {
    PayerType.MEDICARE: 2_000,
    PayerType.COMMERCIAL: 2_000,
    PayerType.MANAGED_CARE: 1_000,
}
# Denial reasons: (group, CARC). PR 27 makes the patient owe it; the others are written off.
DENIALS: tuple[tuple[AdjustmentGroup, str], ...] = (
    (AdjustmentGroup.CONTRACTUAL, "50"),
    (AdjustmentGroup.CONTRACTUAL, "197"),
    (AdjustmentGroup.CONTRACTUAL, "29"),
    (AdjustmentGroup.PATIENT_RESPONSIBILITY, "27"),
)
_DENIAL_IN = 12  # one claim in this many is denied
_DEDUCTIBLE_IN = 4  # one paid claim in this many meets a deductible
_PLB_IN = 6  # one remittance in this many carries a provider-level adjustment
_INACTIVE_IN = 12
_NOT_FOUND_IN = 25
_DEDUCTIBLE_CENTS = 50_000  # the deductible a claim may meet, at most
_COPAY_CENTS = (2_500, 4_000, 7_500, 15_000)


@dataclass(frozen=True, slots=True)
class PayerProfile:
    """What the payer knows of itself: its id, name and kind (from the 837 or the 270, and its own books)."""

    payer_id: str
    name: str
    payer_type: PayerType


def _draw(*parts: str) -> int:
    """A reproducible number from the parts: the first 8 bytes of their SHA-256 digest."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _share(amount_cents: int, basis_points: int) -> int:
    """``amount_cents`` times ``basis_points`` / 10,000, rounded half up, in whole cents."""
    return (amount_cents * basis_points + 5_000) // 10_000


def _denied_line(line_charge: int, reason: tuple[AdjustmentGroup, str]) -> tuple[int, tuple[Adjustment, ...]]:
    group, code = reason
    return 0, (Adjustment(group=group, reason_code=code, amount_cents=line_charge),)


def adjudicate(submission: ClaimSubmission, payer: PayerProfile) -> RemittanceClaim:
    """Decide one claim: paid (with contractual write-off and patient responsibility) or denied."""
    claim = submission.claim
    draw = _draw("claim", payer.payer_id, claim.claim_id)
    denied = draw % _DENIAL_IN == 0
    status = {1: ClaimStatus.PRIMARY, 2: ClaimStatus.SECONDARY, 3: ClaimStatus.TERTIARY}[submission.priority]
    allowed_bp = ALLOWED_SHARE[payer.payer_type]
    coinsurance_bp = _COINSURANCE.get(payer.payer_type, 0)
    # The deductible this claim meets, spent line by line until used up.
    deductible_left = 0
    if not denied and (draw >> 8) % _DEDUCTIBLE_IN == 0:
        deductible_left = _DEDUCTIBLE_CENTS * (1 + (draw >> 16) % 4) // 4
    copay_left = 0
    if not denied and coinsurance_bp == 0 and claim.claim_type is ClaimType.PROFESSIONAL:
        copay_left = _COPAY_CENTS[(draw >> 24) % len(_COPAY_CENTS)]
    reason = DENIALS[(draw >> 32) % len(DENIALS)]
    lines: list[RemittanceLine] = []
    for line in claim.lines:
        charge = line.charge_cents
        adjustments: list[Adjustment] = []
        if denied:
            paid, denial = _denied_line(charge, reason)
            adjustments.extend(denial)
        else:
            allowed = _share(charge, allowed_bp)
            if charge > allowed:
                adjustments.append(
                    Adjustment(
                        group=AdjustmentGroup.CONTRACTUAL, reason_code="45", amount_cents=charge - allowed
                    )
                )
            owed = allowed
            deductible = min(deductible_left, owed)
            deductible_left -= deductible
            owed -= deductible
            coinsurance = _share(owed, coinsurance_bp)
            owed -= coinsurance
            copay = min(copay_left, owed)
            copay_left -= copay
            owed -= copay
            for code, amount in (("1", deductible), ("2", coinsurance), ("3", copay)):
                if amount:
                    adjustments.append(
                        Adjustment(
                            group=AdjustmentGroup.PATIENT_RESPONSIBILITY,
                            reason_code=code,
                            amount_cents=amount,
                        )
                    )
            paid = owed
        lines.append(
            RemittanceLine(
                procedure_code=line.procedure_code,
                modifiers=line.modifiers,
                revenue_code=line.revenue_code,
                charge_cents=charge,
                paid_cents=paid,
                units=line.units,
                service_date=line.service_date,
                line_control_number=str(line.line_number),
                adjustments=tuple(adjustments),
            )
        )
    patient_owes = sum(
        a.amount_cents
        for line in lines
        for a in line.adjustments
        if a.group is AdjustmentGroup.PATIENT_RESPONSIBILITY
    )
    return RemittanceClaim(
        claim_id=claim.claim_id,
        status=ClaimStatus.DENIED if denied else status,
        charge_cents=claim.total_charge_cents,
        paid_cents=sum(line.paid_cents for line in lines),
        patient_responsibility_cents=patient_owes,
        payer_claim_control_number=f"{payer.payer_id[:4]}{draw % 10**12:012d}",
        lines=tuple(lines),
    )


def remit(
    claims: Sequence[RemittanceClaim],
    payer: PayerProfile,
    *,
    payee_npi: str,
    trace_number: str,
    paid_on: dt.date,
) -> Remittance:
    """Put adjudicated claims into one payment: BPR02 is what they pay less any provider-level adjustment."""
    paid = sum(claim.paid_cents for claim in claims)
    adjustments: tuple[ProviderAdjustment, ...] = ()
    draw = _draw("remit", payer.payer_id, trace_number)
    if claims and draw % _PLB_IN == 0:
        if (draw >> 8) % 2 == 0 and paid > 0:
            # Recovery of an earlier overpayment: withheld from this payment (a positive PLB04).
            amount = min(paid, 1_000 + (draw >> 16) % 20_000)
            adjustments = (
                ProviderAdjustment(reason_code="WO", reference=f"RCV{draw % 10**8:08d}", amount_cents=amount),
            )
        else:
            # Interest on a claim paid late: added to this payment (a negative PLB04).
            amount = 100 + (draw >> 16) % 5_000
            adjustments = (
                ProviderAdjustment(
                    reason_code="L6", reference=f"INT{draw % 10**8:08d}", amount_cents=-amount
                ),
            )
    total = paid - sum(adjustment.amount_cents for adjustment in adjustments)
    return Remittance(
        payer_id=payer.payer_id,
        payer_name=payer.name,
        payee_npi=payee_npi,
        trace_number=trace_number,
        payment_method=PaymentMethod.ACH if total > 0 else PaymentMethod.NO_PAYMENT,
        payment_date=paid_on,
        total_paid_cents=total,
        claims=tuple(claims),
        provider_adjustments=adjustments,
    )


def answer_inquiry(inquiry: EligibilityInquiry, plan: str, at: dt.datetime) -> EligibilityResponse:
    """Answer a 270: active with benefits, inactive, or not found, the same way for the same member."""
    member = inquiry.subscriber.member_id
    draw = _draw("member", inquiry.payer.payer_id, member)
    common = {
        "trace_number": inquiry.trace_number,
        "payer": inquiry.payer,
        "provider_npi": inquiry.provider.npi,
        "subscriber": inquiry.subscriber,
        "answered_at": at,
    }
    if not member or draw % _NOT_FOUND_IN == 0:
        return EligibilityResponse(status=EligibilityStatus.UNKNOWN, rejection_reason="75", **common)
    year_start = dt.date(inquiry.inquired_on.year, 1, 1)
    if (draw >> 8) % _INACTIVE_IN == 0:
        return EligibilityResponse(
            status=EligibilityStatus.INACTIVE,
            plan=plan,
            effective_on=dt.date(inquiry.inquired_on.year - 2, 1, 1),
            expires_on=year_start - dt.timedelta(days=1),
            benefits=(
                Benefit(code="6", coverage_level="IND", service_type_codes=("30",), plan_description=plan),
            ),
            **common,
        )
    deductible = 50_000 * (1 + (draw >> 16) % 6)
    remaining = deductible * ((draw >> 24) % 5) // 4
    copay = _COPAY_CENTS[(draw >> 32) % len(_COPAY_CENTS)]
    benefits = (
        Benefit(
            code="1",
            coverage_level="IND",
            service_type_codes=("30",),
            insurance_type="C1",
            plan_description=plan,
        ),
        Benefit(
            code="C",
            coverage_level="IND",
            service_type_codes=("30",),
            period="23",
            amount_cents=deductible,
            in_network="Y",
        ),
        Benefit(
            code="C",
            coverage_level="IND",
            service_type_codes=("30",),
            period="29",
            amount_cents=remaining,
            in_network="Y",
        ),
        Benefit(code="A", coverage_level="IND", service_type_codes=("30",), percent="0.2", in_network="Y"),
        Benefit(
            code="B",
            coverage_level="IND",
            service_type_codes=("98",),
            period="27",
            amount_cents=copay,
            in_network="Y",
        ),
        Benefit(
            code="G",
            coverage_level="IND",
            service_type_codes=("30",),
            period="23",
            amount_cents=4 * deductible,
            in_network="Y",
        ),
    )
    return EligibilityResponse(
        status=EligibilityStatus.ACTIVE,
        plan=plan,
        effective_on=year_start,
        expires_on=dt.date(inquiry.inquired_on.year, 12, 31),
        benefits=benefits,
        **common,
    )
