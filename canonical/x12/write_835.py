"""Write 835 remittances (005010X221A1): what the reference payer sends back to hcsync.

One functional group (GS01 HP) with one transaction set per remittance, since an 835 is one payment (one
BPR and TRN). Claims go in one LX header group, in the order given. Adjustments are written as the guide
asks: CAS segments per group code (CAS01), in the order the groups first appear, with at most six
reason/amount/quantity triplets per segment; provider-level adjustments as PLB segments of at most six.

The guide requires payer details the canonical Remittance does not carry (its tax id for TRN03, its address
for loop 1000A, the claim filing indicator CLP06) and, for an electronic payment, the bank accounts of BPR;
the caller gives them in :class:`PayerDetails` and :class:`EftAccounts`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from canonical.revenue_cycle import (
    Adjustment,
    PaymentMethod,
    Person,
    PostalAddress,
    ProviderAdjustment,
    ProviderParty,
    Remittance,
    RemittanceClaim,
    RemittanceLine,
)
from canonical.x12.write import Element, Envelope, GroupSpec, SetWriter, date8, interchange

__all__ = ["GUIDE_835", "EftAccounts", "PayerDetails", "write_835"]

GUIDE_835 = "005010X221A1"
_TRIPLETS_PER_CAS = 6
_ADJUSTMENTS_PER_PLB = 6
_NAME_MAX = 60  # N102, NM103
_FIRST_NAME_MAX = 35  # NM104
_ID_MAX = 80  # N104, NM109
_REF_MAX = 50  # REF02, TRN02, CLP07, PLB03-2
_CLP01_MAX = 38
_CODE_MAX = 48  # SVC01-2
_ADDRESS_MAX = 55
_CITY_MAX = 30
_EIN_DIGITS = 9
_ELECTRONIC = {PaymentMethod.ACH, PaymentMethod.FEDWIRE, PaymentMethod.FINANCIAL_INSTITUTION_OPTION}


@dataclass(frozen=True, slots=True)
class PayerDetails:
    """What an 835 says about its payer beyond the Remittance: TRN03, loop 1000A N3/N4 and PER, CLP06."""

    tax_id: str  # 9-digit EIN; TRN03 is "1" followed by it
    address: PostalAddress
    contact_phone: str  # PER*BL technical contact, PER04 (PER03 = TE)
    filing_indicator: str  # CLP06 claim filing indicator (12 PPO, 13 POS, HM HMO, MB Medicare B...)


@dataclass(frozen=True, slots=True)
class EftAccounts:
    """BPR06-15 for an electronic payment: the payer's and the payee's bank (ABA routing) and accounts."""

    payer_routing: str  # BPR07 (BPR06 = 01, ABA transit routing number)
    payer_account: str  # BPR09 (BPR08 = DA, demand deposit)
    payee_routing: str  # BPR13
    payee_account: str  # BPR15


def write_835(
    remittances: Sequence[Remittance],
    payee: ProviderParty,
    envelope: Envelope,
    *,
    payer: PayerDetails,
    eft: EftAccounts | None = None,
    patients: Mapping[str, Person] | None = None,
) -> bytes:
    """Write the remittances as one interchange, one 835 set each, all to ``payee`` (loop 1000B).

    ``eft`` is required when a remittance is paid by ACH, Fedwire or the bank's option; a cheque or no
    payment needs none. ``patients`` maps a claim id (CLP01) to the patient loop 2100 NM1*QC names (the
    canonical RemittanceClaim carries no patient); a claim without one gets NM1*QC*1 with no name, which
    the guide and pyx12 accept but x12sdk's 835 model does not read.
    """
    names = patients or {}
    sets: list[Callable[[SetWriter], None]] = [
        partial(_write_set, remittance, payee, payer, eft, names) for remittance in remittances
    ]
    group = GroupSpec(functional_id="HP", guide=GUIDE_835, set_code="835", sets=sets, st03=False)
    return interchange(envelope, [group])


def _write_set(
    remittance: Remittance,
    payee: ProviderParty,
    payer: PayerDetails,
    eft: EftAccounts | None,
    patients: Mapping[str, Person],
    w: SetWriter,
) -> None:
    """BPR, TRN, 1000A payer, 1000B payee, LX with the claims, then PLB."""
    if len(payer.tax_id) != _EIN_DIGITS or not payer.tax_id.isdigit():
        raise w.refuse("TRN03", "the payer's tax id must be 9 digits (TRN03 is 1 followed by it)")
    _bpr(w, remittance, payer.tax_id, eft)
    w.add("TRN", "1", w.text(remittance.trace_number, "TRN02", _REF_MAX), "1" + payer.tax_id)
    if remittance.currency != "USD":
        w.add("CUR", "PR", w.text(remittance.currency, "CUR02", 3))
    w.loop = "1000A"
    w.add("N1", "PR", w.text(remittance.payer_name, "N102", _NAME_MAX))
    w.add(
        "N3",
        w.text(payer.address.line1, "N301", _ADDRESS_MAX),
        w.text(payer.address.line2, "N302", _ADDRESS_MAX, required=False),
    )
    w.add("N4", w.text(payer.address.city, "N401", _CITY_MAX), payer.address.state, payer.address.postal_code)
    w.add("REF", "2U", w.text(remittance.payer_id, "REF02", _REF_MAX))
    w.add("PER", "BL", "", "TE", w.text(payer.contact_phone, "PER04", 256))
    w.loop = "1000B"
    w.add("N1", "PE", w.text(payee.name, "N102", _NAME_MAX), "XX", payee.npi)
    if payee.tax_id:
        w.add("REF", "TJ", payee.tax_id)
    if remittance.claims:
        w.loop = "2000"
        w.add("LX", "1")
        for claim in remittance.claims:
            _claim(w, claim, payer, patients.get(claim.claim_id))
    _plb(w, remittance.provider_adjustments, payee, remittance.payment_date)


def _bpr(w: SetWriter, remittance: Remittance, tax_id: str, eft: EftAccounts | None) -> None:
    """BPR: I (payment with remittance) or H (notification only, no payment), method, banks, date."""
    paid = w.money(remittance.total_paid_cents, "BPR02")
    method = remittance.payment_method
    banks: list[str] = ["", "", "", "", "", "", "", "", "", ""]  # BPR06..BPR15
    if method in _ELECTRONIC:
        if eft is None:
            raise w.refuse("BPR07", f"a {method.value} payment needs the bank accounts (EftAccounts)")
        banks = [
            "01",
            w.text(eft.payer_routing, "BPR07", 12),
            "DA",
            w.text(eft.payer_account, "BPR09", 35),
            "1" + tax_id,  # BPR10 originating company id, the same as TRN03
            "",
            "01",
            w.text(eft.payee_routing, "BPR13", 12),
            "DA",
            w.text(eft.payee_account, "BPR15", 35),
        ]
    handling = "H" if method is PaymentMethod.NO_PAYMENT else "I"
    w.add(
        "BPR",
        handling,
        paid,
        "C",
        method.value,
        "CCP" if method in _ELECTRONIC else "",
        *banks,
        date8(remittance.payment_date),
    )


def _claim(w: SetWriter, claim: RemittanceClaim, payer: PayerDetails, patient: Person | None) -> None:
    """Loop 2100: CLP, claim-level CAS, NM1*QC, then the service lines (2110)."""
    w.loop = "2100"
    if not claim.payer_claim_control_number:
        raise w.refuse("CLP07", "CLP07 payer claim control number is required")
    w.add(
        "CLP",
        w.text(claim.claim_id, "CLP01", _CLP01_MAX),
        claim.status.value,
        w.money(claim.charge_cents, "CLP03"),
        w.money(claim.paid_cents, "CLP04"),
        w.money(claim.patient_responsibility_cents, "CLP05") if claim.patient_responsibility_cents else "",
        w.text(payer.filing_indicator, "CLP06", 2),
        w.text(claim.payer_claim_control_number, "CLP07", _REF_MAX),
    )
    _cas(w, claim.adjustments)
    if patient is None:
        w.add("NM1", "QC", "1")
    else:
        w.add(
            "NM1",
            "QC",
            "1",
            w.text(patient.family_name, "NM103", _NAME_MAX),
            w.text(patient.given_name, "NM104", _FIRST_NAME_MAX, required=False),
            "",
            "",
            "",
            "MI" if patient.member_id else "",
            w.text(patient.member_id, "NM109", _ID_MAX, required=False),
        )
    for line in claim.lines:
        _line(w, line)


def _line(w: SetWriter, line: RemittanceLine) -> None:
    """Loop 2110: SVC (HC procedure, else NU revenue code), DTM*472, CAS, REF*6R."""
    w.loop = "2110"
    service: tuple[str, ...]
    if line.procedure_code:
        service = (
            "HC",
            w.text(line.procedure_code, "SVC01-2", _CODE_MAX),
            *(w.text(m, f"SVC01-{i}", 2) for i, m in enumerate(line.modifiers, 3)),
        )
        revenue = w.text(line.revenue_code, "SVC04", _CODE_MAX, required=False)
    else:
        service = ("NU", w.text(line.revenue_code, "SVC01-2", _CODE_MAX))
        revenue = ""
    w.add(
        "SVC",
        service,
        w.money(line.charge_cents, "SVC02"),
        w.money(line.paid_cents, "SVC03"),
        revenue,
        str(line.units) if line.units is not None else "",
    )
    if line.service_date is not None:
        w.add("DTM", "472", date8(line.service_date))
    _cas(w, line.adjustments)
    if line.line_control_number:
        w.add("REF", "6R", w.text(line.line_control_number, "REF02", _REF_MAX))


def _cas(w: SetWriter, adjustments: Sequence[Adjustment]) -> None:
    """CAS per group code, in order of first appearance, six triplets at most per segment."""
    by_group: dict[str, list[Adjustment]] = {}
    for adjustment in adjustments:
        by_group.setdefault(adjustment.group.value, []).append(adjustment)
    for group, items in by_group.items():
        for start in range(0, len(items), _TRIPLETS_PER_CAS):
            triplets: list[Element] = []
            for adjustment in items[start : start + _TRIPLETS_PER_CAS]:
                triplets += [
                    w.text(adjustment.reason_code, "CAS02", 5),
                    w.money(adjustment.amount_cents, "CAS03"),
                    str(adjustment.quantity) if adjustment.quantity is not None else "",
                ]
            w.add("CAS", group, *triplets)


def _plb(
    w: SetWriter, adjustments: Sequence[ProviderAdjustment], payee: ProviderParty, paid: dt.date
) -> None:
    """PLB segments of up to six adjustments; PLB02 is the end of the payment's calendar year.

    PLB02 is the last day of the provider's fiscal period; the payee's fiscal year is not in the models,
    so the calendar year of the payment stands for it.
    """
    if not adjustments:
        return
    w.loop = "footer"
    fiscal_end = date8(dt.date(paid.year, 12, 31))
    for start in range(0, len(adjustments), _ADJUSTMENTS_PER_PLB):
        pairs: list[Element] = []
        for adjustment in adjustments[start : start + _ADJUSTMENTS_PER_PLB]:
            reason = w.text(adjustment.reason_code, "PLB03-1", 2)
            reference = w.text(adjustment.reference, "PLB03-2", _REF_MAX, required=False)
            pairs += [(reason, reference) if reference else reason, w.money(adjustment.amount_cents, "PLB04")]
        w.add("PLB", payee.npi, fiscal_end, *pairs)
