"""Write 837 claims: 837P (005010X222A1) for professional claims, 837I (005010X223A2) for institutional ones.

One functional group per claim type, since GS08 names the guide; within a group, one transaction set per
billing provider and payer (loop 2000A carries one billing provider, and the receiver is the payer), with
the claims in the order given. Each claim gets its own subscriber loop (2000B) and, when the patient is
a dependent, a patient loop (2000C): the hierarchy is HL 20 > 22 > 23.

Two things the guides require are not in the canonical models, so the caller gives them per claim in a
:class:`ClaimCodes`: SBR09 (claim filing indicator) and, for an 837I, CL1 (admission type and source,
patient status). An 837I claim without its CL101 and CL103 is refused rather than sent with invented codes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from canonical.revenue_cycle import (
    ClaimFrequency,
    ClaimLine,
    ClaimSubmission,
    ClaimType,
    Person,
    PostalAddress,
    ProviderParty,
    SubscriberRelationship,
)
from canonical.x12.write import Envelope, GroupSpec, SetWriter, date8, interchange, time4

__all__ = ["GUIDE_837I", "GUIDE_837P", "ClaimCodes", "write_837"]

GUIDE_837P = "005010X222A1"
GUIDE_837I = "005010X223A2"
_GUIDES = {ClaimType.PROFESSIONAL: GUIDE_837P, ClaimType.INSTITUTIONAL: GUIDE_837I}

# Element maximum lengths of the 5010 837 guides.
_CLM01_MAX = 38
_NAME_LAST_MAX = 60  # NM103
_NAME_FIRST_MAX = 35  # NM104
_ID_MAX = 80  # NM109
_ADDRESS_MAX = 55  # N301, N302
_CITY_MAX = 30  # N401
_REF_MAX = 50  # REF02, SBR03, BHT03
_CODE_MAX = 48  # SV101-2, SV202-2, HI0x-2 (procedure and diagnosis codes)
_MODIFIER_MAX = 2  # SV101-3..6
_PHONE_MAX = 256  # PER04
_CONTACT_MAX = 60  # PER02
_TAXONOMY_MAX = 50  # PRV03
_DIAGNOSES_837P = 12  # one HI: ABK and up to 11 ABF
_DIAGNOSES_PER_HI = 12  # 837I other diagnoses: 12 per HI, HI repeats twice
_OTHER_DIAGNOSES_837I = 24
_BILLING_ZIP_DIGITS = 9  # 2010AA N403 must be the ZIP+4 in 5010
_UNITS_MAX = 15  # SV104 / SV205 (R 1-15)

_RELATIONSHIP_PAT01 = {
    SubscriberRelationship.SPOUSE: "01",
    SubscriberRelationship.CHILD: "19",
    SubscriberRelationship.OTHER: "G8",
}
_PAYER_RESPONSIBILITY = {1: "P", 2: "S", 3: "T"}  # SBR01


@dataclass(frozen=True, slots=True)
class ClaimCodes:
    """Codes the 837 guides require that the canonical Claim does not carry.

    ``filing_indicator`` is SBR09 (CI commercial, MB Medicare part B, MC Medicaid, 11 other non-federal,
    ...). For an 837I, ``admission_type`` is CL101 (1 emergency ... 9 information not available),
    ``admission_source`` CL102 (situational) and ``patient_status`` CL103 (01 discharged home, 30 still
    a patient ...); CL101 and CL103 are required there.
    """

    filing_indicator: str = "CI"
    admission_type: str = ""
    admission_source: str = ""
    patient_status: str = ""


def write_837(
    submissions: Sequence[ClaimSubmission],
    envelope: Envelope,
    *,
    codes: Mapping[str, ClaimCodes] | None = None,
) -> bytes:
    """Write the claims as one interchange: an 837P group, an 837I group, or both.

    ``codes`` maps a claim id (CLM01) to its :class:`ClaimCodes`; a claim without an entry gets the
    defaults, which an 837I refuses (CL1 needs real codes). ``envelope.parties`` must name the submitter
    and receiver and the submitter's contact (loops 1000A and 1000B).
    """
    by_type: dict[ClaimType, dict[tuple[str, str], list[ClaimSubmission]]] = {}
    for submission in submissions:
        sets = by_type.setdefault(submission.claim.claim_type, {})
        sets.setdefault((submission.billing_provider.npi, submission.payer.payer_id), []).append(submission)
    claim_codes = codes or {}
    groups = [
        GroupSpec(
            functional_id="HC",
            guide=_GUIDES[claim_type],
            set_code="837",
            sets=[_set_writer(envelope, claim_type, claims, claim_codes) for claims in sets.values()],
        )
        for claim_type, sets in by_type.items()
    ]
    return interchange(envelope, groups)


def _set_writer(
    envelope: Envelope,
    claim_type: ClaimType,
    claims: list[ClaimSubmission],
    codes: Mapping[str, ClaimCodes],
) -> Callable[[SetWriter], None]:
    return partial(_write_set, envelope, claim_type, claims, codes)


def _write_set(
    envelope: Envelope,
    claim_type: ClaimType,
    claims: list[ClaimSubmission],
    codes: Mapping[str, ClaimCodes],
    w: SetWriter,
) -> None:
    """ST..: BHT, submitter, receiver, the billing provider (HL 20), then each claim's HL 22 (and 23)."""
    parties = envelope.parties
    # BHT03 identifies the batch to the receiver: the set's place in the interchange is unique and fixed.
    w.add("BHT", "0019", "00", w.where.replace("/", ""), date8(envelope.at), time4(envelope.at), "CH")
    w.loop = "1000A"
    w.add(
        "NM1",
        "41",
        "2",
        w.text(parties.sender_name, "NM103", _NAME_LAST_MAX),
        "",
        "",
        "",
        "",
        "46",
        w.text(parties.sender_code, "NM109", _ID_MAX),
    )
    w.add(
        "PER",
        "IC",
        w.text(parties.contact_name, "PER02", _CONTACT_MAX),
        "TE",
        w.text(parties.contact_phone, "PER04", _PHONE_MAX),
    )
    w.loop = "1000B"
    w.add(
        "NM1",
        "40",
        "2",
        w.text(parties.receiver_name, "NM103", _NAME_LAST_MAX),
        "",
        "",
        "",
        "",
        "46",
        w.text(parties.receiver_code, "NM109", _ID_MAX),
    )
    first = claims[0]
    w.loop = "2000A"
    w.add("HL", "1", "", "20", "1")
    _billing_provider(w, first.billing_provider)
    hl = 1
    for submission in claims:
        hl = _claim_hierarchy(w, hl, submission, codes.get(submission.claim.claim_id, ClaimCodes()))


def _billing_provider(w: SetWriter, provider: ProviderParty) -> None:
    """PRV (when a taxonomy is known), loop 2010AA: NM1*85, N3, N4 with the ZIP+4, REF*EI."""
    if provider.taxonomy_code:
        w.add("PRV", "BI", "PXC", w.text(provider.taxonomy_code, "PRV03", _TAXONOMY_MAX))
    w.loop = "2010AA"
    w.add(
        "NM1", "85", "2", w.text(provider.name, "NM103", _NAME_LAST_MAX), "", "", "", "", "XX", provider.npi
    )
    if provider.address is None:
        raise w.refuse("N301", "the billing provider needs an address (N3/N4)")
    _address(w, provider.address, zip_digits=_BILLING_ZIP_DIGITS)
    if not provider.tax_id:
        raise w.refuse("REF02", "the billing provider needs its employer identification number (REF*EI)")
    w.add("REF", "EI", provider.tax_id)


def _address(w: SetWriter, address: PostalAddress, *, zip_digits: int | None = None) -> None:
    """N3 and N4; ``zip_digits`` when the loop needs a ZIP of that length (2010AA: the ZIP+4)."""
    w.add(
        "N3",
        w.text(address.line1, "N301", _ADDRESS_MAX),
        w.text(address.line2, "N302", _ADDRESS_MAX, required=False),
    )
    if zip_digits is not None and len(address.postal_code) != zip_digits:
        raise w.refuse("N403", f"the ZIP code must have {zip_digits} digits in this loop")
    w.add("N4", w.text(address.city, "N401", _CITY_MAX), address.state, address.postal_code)


def _person_name(w: SetWriter, qualifier: str, person: Person, *, member_id: bool) -> None:
    w.add(
        "NM1",
        qualifier,
        "1",
        w.text(person.family_name, "NM103", _NAME_LAST_MAX),
        w.text(person.given_name, "NM104", _NAME_FIRST_MAX, required=False),
        "",
        "",
        "",
        "MI" if member_id else "",
        w.text(person.member_id, "NM109", _ID_MAX) if member_id else "",
    )


def _demographics(w: SetWriter, person: Person, *, required: bool) -> None:
    if person.birth_date is None:
        if required:
            raise w.refuse("DMG02", "the patient's date of birth is required (DMG)")
        return
    w.add("DMG", "D8", date8(person.birth_date), person.gender.value)


def _claim_hierarchy(w: SetWriter, hl: int, submission: ClaimSubmission, codes: ClaimCodes) -> int:
    """HL 22 with SBR, 2010BA and 2010BB; HL 23 with PAT and 2010CA for a dependent; then the claim.

    Returns the last HL number used.
    """
    dependent = submission.relationship is not SubscriberRelationship.SELF
    subscriber_hl = hl + 1
    w.loop = "2000B"
    w.add("HL", str(subscriber_hl), "1", "22", "1" if dependent else "0")
    w.add(
        "SBR",
        _PAYER_RESPONSIBILITY[submission.priority],
        "" if dependent else "18",
        w.text(submission.group_number, "SBR03", _REF_MAX, required=False),
        "",
        "",
        "",
        "",
        "",
        w.text(codes.filing_indicator, "SBR09", 2),
    )
    w.loop = "2010BA"
    subscriber = submission.subscriber
    _person_name(w, "IL", subscriber, member_id=True)
    if subscriber.address is not None:
        _address(w, subscriber.address)
    _demographics(w, subscriber, required=False)
    w.loop = "2010BB"
    payer = submission.payer
    w.add(
        "NM1",
        "PR",
        "2",
        w.text(payer.name, "NM103", _NAME_LAST_MAX),
        "",
        "",
        "",
        "",
        "PI",
        w.text(payer.payer_id, "NM109", _ID_MAX),
    )
    last = subscriber_hl
    if dependent:
        assert submission.patient is not None  # ClaimSubmission's validator guarantees it
        last = subscriber_hl + 1
        w.loop = "2000C"
        w.add("HL", str(last), str(subscriber_hl), "23", "0")
        w.add("PAT", _RELATIONSHIP_PAT01[submission.relationship])
        w.loop = "2010CA"
        _person_name(w, "QC", submission.patient, member_id=False)
        if submission.patient.address is None:
            raise w.refuse("N301", "a dependent patient's address is required (loop 2010CA N3/N4)")
        _address(w, submission.patient.address)
        _demographics(w, submission.patient, required=True)
    _claim(w, submission, codes)
    return last


def _claim(w: SetWriter, submission: ClaimSubmission, codes: ClaimCodes) -> None:
    """Loop 2300 (CLM, DTP*434, CL1, REF*F8, HI) and its lines (2400)."""
    claim = submission.claim
    institutional = claim.claim_type is ClaimType.INSTITUTIONAL
    w.loop = "2300"
    clm05 = (w.text(claim.facility_code, "CLM05-1", 2), "A" if institutional else "B", claim.frequency.value)
    clm01 = w.text(claim.claim_id, "CLM01", _CLM01_MAX)
    charge = w.money(claim.total_charge_cents, "CLM02")
    if institutional:
        # CLM06 (provider signature) is not used in an 837I.
        w.add("CLM", clm01, charge, "", "", clm05, "", "A", "Y", "Y")
        assert claim.statement_from is not None and claim.statement_to is not None  # Claim's validator
        w.add("DTP", "434", "RD8", f"{date8(claim.statement_from)}-{date8(claim.statement_to)}")
        w.add(
            "CL1",
            w.text(codes.admission_type, "CL101", 1),
            w.text(codes.admission_source, "CL102", 1, required=False),
            w.text(codes.patient_status, "CL103", 2),
        )
    else:
        w.add("CLM", clm01, charge, "", "", clm05, "Y", "A", "Y", "Y")
    if claim.frequency is not ClaimFrequency.ORIGINAL:
        w.add("REF", "F8", w.text(claim.payer_claim_control_number, "REF02", _REF_MAX))
    principal, *others = claim.diagnosis_codes
    if institutional:
        w.add("HI", ("ABK", w.text(principal, "HI01-2", _CODE_MAX)))
        if claim.drg:
            w.add("HI", ("DR", w.text(claim.drg, "HI01-2", _CODE_MAX)))
        if len(others) > _OTHER_DIAGNOSES_837I:
            raise w.refuse("HI01-2", f"an 837I carries at most {_OTHER_DIAGNOSES_837I} other diagnoses")
        for start in range(0, len(others), _DIAGNOSES_PER_HI):
            chunk = others[start : start + _DIAGNOSES_PER_HI]
            w.add(
                "HI", *(("ABF", w.text(code, f"HI{i:02d}-2", _CODE_MAX)) for i, code in enumerate(chunk, 1))
            )
    else:
        if len(claim.diagnosis_codes) > _DIAGNOSES_837P:
            raise w.refuse("HI12-2", f"an 837P carries at most {_DIAGNOSES_837P} diagnoses")
        w.add(
            "HI",
            ("ABK", w.text(principal, "HI01-2", _CODE_MAX)),
            *(("ABF", w.text(code, f"HI{i:02d}-2", _CODE_MAX)) for i, code in enumerate(others, 2)),
        )
    for line in claim.lines:
        _line(w, line, institutional)


def _line(w: SetWriter, line: ClaimLine, institutional: bool) -> None:
    """Loop 2400: LX, SV2 (837I) or SV1 (837P), DTP*472, and 2410 LIN/CTP for a drug."""
    w.loop = "2400"
    w.add("LX", str(line.line_number))
    units = str(line.units)
    if len(units) > _UNITS_MAX:
        raise w.refuse("SV104", f"the unit count has more than {_UNITS_MAX} digits")
    procedure: tuple[str, ...] = ()
    if line.procedure_code:
        procedure = (
            "HC",
            w.text(line.procedure_code, "SV101-2", _CODE_MAX),
            *(w.text(m, f"SV101-{i}", _MODIFIER_MAX) for i, m in enumerate(line.modifiers, 3)),
        )
    charge = w.money(line.charge_cents, "SV102")
    if institutional:
        w.add("SV2", line.revenue_code, procedure, charge, "UN", units)
    else:
        w.add("SV1", procedure, charge, "UN", units, "", "", ("1",))
    if line.service_date is not None:
        w.add("DTP", "472", "D8", date8(line.service_date))
    elif not institutional:
        raise w.refuse("DTP03", "an 837P service line needs its service date (DTP*472)")
    if line.ndc_code:
        w.loop = "2410"
        w.add("LIN", "", "N4", w.text(line.ndc_code, "LIN03", _CODE_MAX))
        w.add("CTP", "", "", "", units, ("UN",))
