"""x12sdk transaction models into canonical models: 837P/837I claims, 835 remittances, 270/271 eligibility.

Each mapper walks one x12sdk transaction model in file order and builds the canonical models, locating
every refusal through :class:`SetLocation`: the k-th claim of a set is its k-th CLM (837) or CLP (835),
the n-th service line its n-th SV1/SV2 or SVC, because x12sdk keeps loops in file order. A claim that
cannot be mapped is one fault, named by its ordinal (``claim 2``), never by CLM01/CLP01 (PHI); the other
claims of the set are still tried, so one reading reports every bad claim at once.

The balances (CLM02, CLP03 - CLP04, SVC02 - SVC03, BPR02) are checked before any model is built, on
the segments (balance.py), so that their faults name the segment and the difference in cents; the
canonical models check them again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from canonical.errors import Fault
from canonical.models import CanonicalModel
from canonical.revenue_cycle import (
    Adjustment,
    AdjustmentGroup,
    Benefit,
    Claim,
    ClaimFrequency,
    ClaimLine,
    ClaimStatus,
    ClaimSubmission,
    ClaimType,
    EligibilityInquiry,
    EligibilityResponse,
    EligibilityStatus,
    Gender,
    PayerParty,
    PaymentMethod,
    Person,
    PostalAddress,
    ProviderAdjustment,
    ProviderParty,
    Remittance,
    RemittanceClaim,
    RemittanceLine,
    SubscriberRelationship,
)
from canonical.x12.envelope import Segment
from canonical.x12.locate import At, ReadRefused, SetLocation, resolve
from canonical.x12.values import (
    MAPPING_RULE,
    cents,
    code,
    components,
    optional_cents,
    optional_date,
    period,
    text,
    whole,
)

__all__ = ["MAPPING_RULE", "map_270", "map_271", "map_835", "map_837"]

_M = TypeVar("_M", bound=CanonicalModel)

# HI qualifiers: principal diagnosis (ICD-10 ABK, ICD-9 BK), other diagnoses (ABF, BF), the DRG (DR).
_PRINCIPAL = frozenset({"ABK", "BK"})
_OTHER = frozenset({"ABF", "BF"})
_DRG = "DR"
_HI_ELEMENTS = 12
_CAS_TRIPLETS = 6
_PLB_PAIRS = 6
_MAX_MODIFIERS = 4
_PRIORITY = {"P": 1, "S": 2, "T": 3}
_NPI_QUALIFIER = "XX"
_ATTENDING = "71"
_REVENUE_QUALIFIER = "NU"
_REJECTED = "N"  # AAA01: the request was not valid, AAA03 says why
# DTP/DTM qualifiers
_STATEMENT = "434"
_SERVICE = "472"
_SERVICE_START = "150"
_PLAN_BEGIN, _PLAN_END, _PLAN_PERIOD = "346", "347", "291"


# --------------------------------------------------------------------------------------------------
# Shared


def _build(
    model: type[_M],
    where: SetLocation,
    segment: At,
    what: str,
    fields_at: dict[str, At] | None = None,
    **values: Any,
) -> _M:
    """Build a canonical model; a refusal of its own rules becomes a located fault (redacted of PHI).

    The fault is at ``segment``, or at the segment ``fields_at`` names for the refused field (a
    provider's tax id is refused at its REF*EI, not at its NM1).
    """
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "model"
        reason = f"{what}: {model.__name__}.{field}: {where.redact(first['msg'])}"
        at = (fields_at or {}).get(str(first["loc"][0]) if first["loc"] else "") or segment
        raise where.refuse(MAPPING_RULE, reason, at) from None


def _each(items: Any) -> list[Any]:
    """A loop or segment x12sdk holds as one object, a list or None, as a list."""
    if items is None:
        return []
    return list(items) if isinstance(items, list | tuple) else [items]


def _ref(refs: Any, qualifier: str) -> str:
    """REF02 of the first REF with REF01 = ``qualifier`` among ``refs``."""
    for ref in _each(refs):
        if code(ref.reference_identification_qualifier) == qualifier:
            return text(ref.reference_identification)
    return ""


def _address(loop: Any, where: SetLocation, near: At, what: str) -> PostalAddress | None:
    n3, n4 = getattr(loop, "n3_segment", None), getattr(loop, "n4_segment", None)
    if n3 is None or n4 is None:
        return None
    return _build(
        PostalAddress,
        where,
        lambda: where.following("N4", resolve(near)),
        what,
        line1=text(n3.address_information_1),
        line2=text(n3.address_information_2),
        city=text(n4.city_name),
        state=text(n4.state_province_code),
        postal_code=text(n4.postal_code),
    )


def _gender(dmg: Any) -> Gender:
    value = code(getattr(dmg, "gender_code", None)) if dmg is not None else ""
    return {"F": Gender.FEMALE, "M": Gender.MALE}.get(value, Gender.UNKNOWN)


def _person(loop: Any, where: SetLocation, what: str, member: bool) -> Person:
    """NM1 (NM109 as member id when ``member``), DMG and N3/N4 of a subscriber or patient loop."""
    nm1 = loop.nm1_segment
    name = text(nm1.name_last_or_organization_name)
    at: At = lambda: where.holding("NM1", 3, name)  # noqa: E731 (found only when a fault needs it)
    dmg = getattr(loop, "dmg_segment", None)
    birth = optional_date(
        getattr(dmg, "date_time_period", None), where, lambda: where.following("DMG", resolve(at)), "DMG02"
    )
    return _build(
        Person,
        where,
        at,
        what,
        member_id=text(nm1.identification_code) if member else "",
        family_name=text(nm1.name_last_or_organization_name),
        given_name=text(nm1.name_first),
        birth_date=birth,
        gender=_gender(dmg),
        address=_address(loop, where, at, what),
    )


def _payer(nm1: Any, where: SetLocation, what: str) -> PayerParty:
    payer_id = text(nm1.identification_code)
    at: At = lambda: where.holding("NM1", 9, payer_id)  # noqa: E731
    return _build(
        PayerParty,
        where,
        at,
        what,
        payer_id=text(nm1.identification_code),
        name=text(nm1.name_last_or_organization_name),
    )


def _npi(nm1: Any) -> str:
    return text(nm1.identification_code) if code(nm1.identification_code_qualifier) == _NPI_QUALIFIER else ""


# --------------------------------------------------------------------------------------------------
# 837P / 837I -> ClaimSubmission


def _claims_837(model: Any) -> Iterator[tuple[Any, Any, Any | None, Any]]:
    """(2000A, 2000B, 2000C or None, 2300) for every claim in file order: the subscriber's claims, then
    each dependent's (x12sdk's ``claims()`` order, with the 2000A and 2000B loops it does not give)."""
    for loop_2000a in model.loop_2000a:
        for loop_2000b in loop_2000a.loop_2000b:
            for claim in _each(loop_2000b.loop_2300):
                yield loop_2000a, loop_2000b, None, claim
            for loop_2000c in _each(loop_2000b.loop_2000c):
                for claim in _each(loop_2000c.loop_2300):
                    yield loop_2000a, loop_2000b, loop_2000c, claim


def map_837(
    model: Any, where: SetLocation, claim_type: ClaimType
) -> tuple[list[ClaimSubmission], list[Fault]]:
    """Every claim of an 837 as a ClaimSubmission; faults for the claims that cannot be mapped."""
    submissions: list[ClaimSubmission] = []
    faults: list[Fault] = []
    first_line = 0
    for index, (loop_2000a, loop_2000b, loop_2000c, claim) in enumerate(_claims_837(model)):
        try:
            submissions.append(
                _submission(where, claim_type, index, first_line, loop_2000a, loop_2000b, loop_2000c, claim)
            )
        except ReadRefused as exc:
            faults.append(exc.fault)
        first_line += len(_each(claim.loop_2400))
    return submissions, faults


def _submission(
    where: SetLocation,
    claim_type: ClaimType,
    index: int,
    first_line: int,
    loop_2000a: Any,
    loop_2000b: Any,
    loop_2000c: Any | None,
    loop_2300: Any,
) -> ClaimSubmission:
    what = f"claim {index + 1}"
    clm = where.nth("CLM", index)
    billing = loop_2000a.loop_2010aa
    payer_nm1 = loop_2000b.loop_2010bb.nm1_segment
    npi = _npi(billing.nm1_segment)
    npi_at: At = lambda: where.holding("NM1", 9, npi) or where.following("NM1", None, "85")  # noqa: E731
    provider = _build(
        ProviderParty,
        where,
        npi_at,
        f"{what}, billing provider (2010AA)",
        {
            "tax_id": lambda: where.following("REF", resolve(npi_at), "EI"),
            "taxonomy_code": lambda: where.following("PRV", None, "BI"),
        },
        npi=_npi(billing.nm1_segment),
        name=text(billing.nm1_segment.name_last_or_organization_name),
        tax_id=_ref(billing.ref_segment, "EI"),
        taxonomy_code=text(getattr(loop_2000a.prv_segment, "reference_identification", None)),
        address=_address(billing, where, npi_at, f"{what}, billing provider (2010AA)"),
    )
    sbr = loop_2000b.sbr_segment
    responsibility = code(sbr.payer_responsibility_code)
    sbr_at: At = lambda: where.holding("SBR", 1, responsibility)  # noqa: E731
    priority = _PRIORITY.get(code(sbr.payer_responsibility_code))
    if priority is None:
        raise where.refuse(
            MAPPING_RULE, f"{what}: payer responsibility beyond tertiary is not handled", sbr_at, "SBR01"
        )
    relationship = SubscriberRelationship.SELF
    patient = None
    if loop_2000c is not None:
        relationship = SubscriberRelationship.from_x12(
            code(loop_2000c.pat_segment.individual_relationship_code)
        )
        patient = _person(loop_2000c.loop_2010ca, where, f"{what}, patient (2010CA)", member=False)
    attending = ""
    for loop_2310 in _each(getattr(loop_2300, "loop_2310a", None)):
        if code(loop_2310.nm1_segment.entity_identifier_code) == _ATTENDING:
            attending = _npi(loop_2310.nm1_segment)
    claim_values = _claim(where, claim_type, what, clm, where.nth("CLM", index + 1), first_line, loop_2300)
    claim = _build(
        Claim,
        where,
        clm,
        what,
        billing_provider_npi=provider.npi,
        payer_id=text(payer_nm1.identification_code),
        **claim_values,
    )
    return _build(
        ClaimSubmission,
        where,
        clm,
        what,
        claim=claim,
        billing_provider=provider,
        payer=_payer(payer_nm1, where, f"{what}, payer (2010BB)"),
        subscriber=_person(loop_2000b.loop_2010ba, where, f"{what}, subscriber (2010BA)", member=True),
        relationship=relationship,
        patient=patient,
        group_number=text(sbr.group_policy_number),
        priority=priority,
        attending_npi=attending,
    )


def _claim(
    where: SetLocation,
    claim_type: ClaimType,
    what: str,
    clm: Segment | None,
    next_clm: Segment | None,
    first_line: int,
    loop_2300: Any,
) -> dict[str, Any]:
    """The Claim's values from loop 2300 and its 2400 lines (the parties are added by the caller)."""
    segment = loop_2300.clm_segment
    clm05 = components(segment.health_care_service_location_information, where.component)
    frequency_code = clm05[2] if len(clm05) > 2 and clm05[2] else ClaimFrequency.ORIGINAL.value
    if frequency_code not in {frequency.value for frequency in ClaimFrequency}:
        raise where.refuse(
            MAPPING_RULE,
            f"{what}: claim frequency {frequency_code} is not handled (1, 7 or 8)",
            clm,
            "CLM05-3",
        )
    diagnoses, drg = _diagnoses(loop_2300, where, what, clm, next_clm)
    statement = None
    for dtp in _each(loop_2300.dtp_segment):
        if text(dtp.date_time_qualifier) == _STATEMENT:
            at = where.following("DTP", clm, _STATEMENT, next_clm)
            statement = period(dtp.date_time_period, where, at, "DTP03")
    lines = tuple(
        _line(where, claim_type, what, number, first_line + number, loop)
        for number, loop in enumerate(_each(loop_2300.loop_2400))
    )
    total = cents(segment.total_claim_charge_amount, where, clm, "CLM02")
    claim_id = text(segment.patient_control_number)
    return {
        "claim_id": claim_id,
        # An 837 carries no encounter id: CLM01 is the provider's account number, one per encounter.
        "encounter_id": claim_id,
        "claim_type": claim_type,
        "frequency": ClaimFrequency(frequency_code),
        "facility_code": clm05[0] if clm05 else "",
        "total_charge_cents": total,
        "statement_from": statement[0] if statement else None,
        "statement_to": statement[1] if statement else None,
        "diagnosis_codes": diagnoses,
        "drg": drg,
        "payer_claim_control_number": _ref(loop_2300.ref_segment, "F8"),
        "lines": lines,
    }


def _diagnoses(
    loop_2300: Any, where: SetLocation, what: str, clm: Segment | None, next_clm: Segment | None
) -> tuple[tuple[str, ...], str]:
    """HI: the principal diagnosis first, then the others (dots dropped); and the DRG."""
    principal: list[str] = []
    others: list[str] = []
    drg = ""
    for hi in _each(loop_2300.hi_segment):
        for number in range(1, _HI_ELEMENTS + 1):
            parts = components(getattr(hi, f"health_care_code_{number}", None), where.component)
            if len(parts) == 1:
                at = where.following("HI", clm, before=next_clm) or clm
                raise where.refuse(
                    MAPPING_RULE,
                    f"{what}: HI{number:02d} is not a qualifier and a code separated by "
                    f"{where.component!r} (ISA16)",
                    at,
                    f"HI{number:02d}",
                )
            if len(parts) < 2:
                continue
            qualifier, value = parts[0], parts[1].replace(".", "")
            if qualifier in _PRINCIPAL:
                principal.append(value)
            elif qualifier in _OTHER:
                others.append(value)
            elif qualifier == _DRG:
                drg = value
    if not principal:
        at = where.following("HI", clm, before=next_clm) or clm
        raise where.refuse(MAPPING_RULE, f"{what}: no principal diagnosis (HI*ABK)", at, "HI01")
    return (principal[0], *principal[1:], *others), drg


def _line(
    where: SetLocation, claim_type: ClaimType, what: str, number: int, ordinal: int, loop: Any
) -> ClaimLine:
    """One 2400 loop: SV1 (837P) or SV2 (837I), its DTP*472 and its drug (LIN03)."""
    professional = claim_type is ClaimType.PROFESSIONAL
    segment_id = "SV1" if professional else "SV2"
    at = where.nth(segment_id, ordinal)
    lx = where.nth("LX", ordinal)
    line_what = f"{what}, line {number + 1}"
    if professional:
        sv = loop.sv1_segment
        procedure = components(sv.product_service_id_qualifier, where.component)
        revenue = ""
        charge = cents(sv.line_item_charge_amount, where, at, "SV102")
        units = whole(sv.service_unit_count, where, at, "SV104")
    else:
        sv = loop.sv2_segment
        procedure = components(sv.composite_medical_procedure_identifier, where.component)
        revenue = text(sv.service_line_revenue_code)
        charge = cents(sv.line_item_charge_amount, where, at, "SV203")
        units = whole(sv.service_unit_count, where, at, "SV205")
    service = None
    for dtp in _each(loop.dtp_segment):
        if text(dtp.date_time_qualifier) == _SERVICE:
            dates = period(dtp.date_time_period, where, where.following("DTP", at, _SERVICE), "DTP03")
            service = dates[0] if dates else None
    ndc = ""
    for drug in _each(getattr(loop, "loop_2410", None)):
        ndc = text(getattr(drug.lin_segment, "national_drug_code_universal_product_number", None))
    return _build(
        ClaimLine,
        where,
        at,
        line_what,
        line_number=whole(loop.lx_segment.assigned_number, where, lx, "LX01") or 0,
        revenue_code=revenue,
        procedure_code=procedure[1] if len(procedure) > 1 else "",
        modifiers=tuple(part for part in procedure[2 : 2 + _MAX_MODIFIERS] if part),
        units=units or 0,
        charge_cents=charge,
        service_date=service,
        ndc_code=ndc,
    )


# --------------------------------------------------------------------------------------------------
# 835 -> Remittance


def map_835(model: Any, where: SetLocation, plbs: Sequence[Any]) -> tuple[list[Remittance], list[Fault]]:
    """The 835 as one Remittance; ``plbs`` are its PLB segments as x12sdk PlbSegment models.

    x12sdk's 835 model holds one PLB at most, so the caller gives it only the first and reads every PLB
    through x12sdk's own PLB segment model (read.py, ``_plb_models``).
    """
    header = model.header
    bpr_at = where.nth("BPR", 0)
    faults: list[Fault] = []
    claims: list[RemittanceClaim] = []
    first_line = 0
    for index, paid in enumerate(model.claims()):
        try:
            claims.append(_remittance_claim(where, index, first_line, paid.claim))
        except ReadRefused as exc:
            faults.append(exc.fault)
        first_line += len(_each(paid.claim.loop_2110))
    try:
        adjustments = [
            adjustment
            for ordinal, plb in enumerate(plbs)
            for adjustment in _provider_adjustments(where, plb, where.nth("PLB", ordinal))
        ]
        bpr = header.bpr_segment
        trn = header.trn_segment
        total = cents(bpr.total_actual_provider_payment_amount, where, bpr_at, "BPR02")
        method = code(bpr.payment_method_code)
        if method not in {m.value for m in PaymentMethod}:
            raise where.refuse(MAPPING_RULE, f"payment method {method} is not handled", bpr_at, "BPR04")
        paid_on = optional_date(bpr.eft_effective_date, where, bpr_at, "BPR16")
        if paid_on is None:
            raise where.refuse(MAPPING_RULE, "no payment date", bpr_at, "BPR16")
        payer = model.loop_1000a
        payee = model.loop_1000b
        payer_id = _ref(payer.ref_segment, "2U") or text(trn.originating_company_identifier)
        cur = getattr(header, "cur_segment", None)
        if faults:
            return [], faults
        remittance = _build(
            Remittance,
            where,
            bpr_at,
            "the payment",
            payer_id=payer_id,
            payer_name=text(payer.n1_segment.name),
            payee_npi=text(payee.n1_segment.identification_code)
            if code(payee.n1_segment.identification_code_qualifier) == _NPI_QUALIFIER
            else "",
            trace_number=text(trn.reference_identification_1),
            payment_method=PaymentMethod(method),
            payment_date=paid_on,
            total_paid_cents=total,
            currency=text(cur.currency_code) if cur is not None else "USD",
            claims=tuple(claims),
            provider_adjustments=tuple(adjustments),
        )
    except ReadRefused as exc:
        return [], [*faults, exc.fault]
    return [remittance], faults


def _adjustments(
    where: SetLocation, cas_segments: Any, owner: Segment | None, stop: Segment | None, what: str
) -> tuple[Adjustment, ...]:
    """The CAS triplets of a claim or line; ``owner`` is its CLP or SVC, ``stop`` the segment after."""
    located = where.between("CAS", owner, stop)
    out: list[Adjustment] = []
    for ordinal, cas in enumerate(_each(cas_segments)):
        at = located[ordinal] if ordinal < len(located) else owner
        group = code(cas.adjustment_group_code)
        if group not in {g.value for g in AdjustmentGroup}:
            raise where.refuse(MAPPING_RULE, f"{what}: adjustment group {group} is not handled", at, "CAS01")
        for number in range(1, _CAS_TRIPLETS + 1):
            reason = text(getattr(cas, f"adjustment_reason_code_{number}", None))
            amount = getattr(cas, f"monetary_amount_{number}", None)
            if not reason and amount is None:
                continue
            element = 3 * number
            out.append(
                _build(
                    Adjustment,
                    where,
                    at,
                    what,
                    group=AdjustmentGroup(group),
                    reason_code=reason,
                    amount_cents=cents(amount, where, at, f"CAS{element:02d}"),
                    quantity=whole(
                        getattr(cas, f"quantity_{number}", None), where, at, f"CAS{element + 1:02d}"
                    ),
                )
            )
    return tuple(out)


def _remittance_claim(where: SetLocation, index: int, first_line: int, loop_2100: Any) -> RemittanceClaim:
    what = f"claim {index + 1}"
    clp = loop_2100.clp_segment
    clp_at = where.nth("CLP", index)
    lines_2110 = _each(loop_2100.loop_2110)
    first_svc = where.nth("SVC", first_line) if lines_2110 else None
    next_clp = where.nth("CLP", index + 1)
    status = code(clp.claim_status_code)
    if status not in {s.value for s in ClaimStatus}:
        raise where.refuse(MAPPING_RULE, f"{what}: claim status {status} is not handled", clp_at, "CLP02")
    adjustments = _adjustments(where, loop_2100.cas_segment, clp_at, first_svc or next_clp, what)
    lines = []
    for number, loop in enumerate(lines_2110):
        svc_at = where.nth("SVC", first_line + number)
        after = where.nth("SVC", first_line + number + 1)
        stop = (
            after
            if after is not None and (next_clp is None or after.position < next_clp.position)
            else next_clp
        )
        lines.append(_remittance_line(where, f"{what}, line {number + 1}", loop, svc_at, stop))
    charge = cents(clp.total_claim_charge_amount, where, clp_at, "CLP03")
    paid = cents(clp.claim_payment_amount, where, clp_at, "CLP04")
    return _build(
        RemittanceClaim,
        where,
        clp_at,
        what,
        claim_id=text(clp.patient_control_number),
        status=ClaimStatus(status),
        charge_cents=charge,
        paid_cents=paid,
        patient_responsibility_cents=optional_cents(clp.patient_responsibility_amount, where, clp_at, "CLP05")
        or 0,
        payer_claim_control_number=text(clp.payer_claim_control_number),
        adjustments=adjustments,
        lines=tuple(lines),
    )


def _remittance_line(
    where: SetLocation, what: str, loop: Any, svc_at: Segment | None, stop: Segment | None
) -> RemittanceLine:
    svc = loop.svc_segment
    procedure = components(svc.composite_medical_procedure_identifier_1, where.component)
    qualifier = procedure[0] if procedure else ""
    code_value = procedure[1] if len(procedure) > 1 else ""
    revenue = text(svc.revenue_code) or (code_value if qualifier == _REVENUE_QUALIFIER else "")
    charge = cents(svc.line_item_charge_amount, where, svc_at, "SVC02")
    paid = cents(svc.line_item_provider_payment_amount, where, svc_at, "SVC03")
    adjustments = _adjustments(where, loop.cas_segment, svc_at, stop, what)
    service = None
    for dtm in _each(loop.dtm_segment):
        if text(dtm.date_time_qualifier) in {_SERVICE, _SERVICE_START} and service is None:
            service = optional_date(dtm.production_date, where, where.following("DTM", svc_at), "DTM02")
    return _build(
        RemittanceLine,
        where,
        svc_at,
        what,
        procedure_code="" if qualifier == _REVENUE_QUALIFIER else code_value,
        modifiers=tuple(part for part in procedure[2 : 2 + _MAX_MODIFIERS] if part),
        revenue_code=revenue,
        charge_cents=charge,
        paid_cents=paid,
        units=whole(svc.units_of_service_paid_count, where, svc_at, "SVC05"),
        service_date=service,
        line_control_number=_ref(loop.ref_segment, "6R"),
        adjustments=adjustments,
    )


def _provider_adjustments(where: SetLocation, plb: Any, at: Segment | None) -> list[ProviderAdjustment]:
    out: list[ProviderAdjustment] = []
    for number in range(1, _PLB_PAIRS + 1):
        reason = components(getattr(plb, f"adjustment_reason_code_{number}", None), where.component)
        amount = getattr(plb, f"provider_adjustment_amount_{number}", None)
        if not reason and amount is None:
            continue
        out.append(
            _build(
                ProviderAdjustment,
                where,
                at,
                f"provider adjustment {number}",
                reason_code=reason[0] if reason else "",
                reference=reason[1] if len(reason) > 1 else "",
                amount_cents=cents(amount, where, at, f"PLB{2 * number + 2:02d}"),
            )
        )
    return out


# --------------------------------------------------------------------------------------------------
# 270 / 271 -> EligibilityInquiry / EligibilityResponse


def _members(model: Any) -> Iterator[tuple[Any, Any, Any, Any, Any | None]]:
    """(2000A, 2000B, 2000C, the member's 2000 loop, 2000D or None) for every person asked or answered
    about, as x12sdk's ``members()`` picks them (a subscriber counts when they have benefits of their own
    or no dependents), with the 2000C/2000D loops that hold the TRN it does not give."""
    for loop_2000a in model.loop_2000a:
        for loop_2000b in _each(loop_2000a.loop_2000b):
            for loop_2000c in _each(loop_2000b.loop_2000c):
                dependents = _each(loop_2000c.loop_2000d)
                if _each(getattr(loop_2000c.loop_2100c, "loop_2110c", None)) or not dependents:
                    yield loop_2000a, loop_2000b, loop_2000c, loop_2000c, None
                for loop_2000d in dependents:
                    yield loop_2000a, loop_2000b, loop_2000c, loop_2000d, loop_2000d


def _trace(member: Any, where: SetLocation, what: str) -> str:
    for trn in _each(member.trn_segment):
        return text(trn.reference_identification_1)
    raise where.refuse(MAPPING_RULE, f"{what}: no TRN trace number", where.nth("HL", 0), "TRN02")


def _bht_date(model: Any, where: SetLocation) -> dt.date:
    bht = model.header.bht_segment
    day = optional_date(bht.transaction_set_creation_date, where, where.nth("BHT", 0), "BHT04")
    if day is None:
        raise where.refuse(MAPPING_RULE, "no BHT04 date", where.nth("BHT", 0), "BHT04")
    return day


def _bht_time(model: Any, where: SetLocation) -> dt.datetime:
    """BHT04 and BHT05 as an aware time. X12 carries no zone: hcsync reads it as UTC."""
    day = _bht_date(model, where)
    raw = text(model.header.bht_segment.transaction_set_creation_time)
    digits = raw[:6] if len(raw) >= 6 else raw[:4]
    try:
        clock = dt.datetime.strptime(digits, "%H%M%S" if len(digits) == 6 else "%H%M").time()
    except ValueError:
        raise where.refuse(MAPPING_RULE, "not an HHMM time", where.nth("BHT", 0), "BHT05") from None
    return dt.datetime.combine(day, clock, tzinfo=dt.UTC)


def _receiver(nm1: Any, where: SetLocation, what: str) -> ProviderParty:
    receiver_id = text(nm1.identification_code)
    at: At = lambda: where.holding("NM1", 9, receiver_id)  # noqa: E731
    if code(nm1.identification_code_qualifier) != _NPI_QUALIFIER:
        raise where.refuse(
            MAPPING_RULE, f"{what}: the information receiver is not named by an NPI (NM108 XX)", at, "NM108"
        )
    return _build(
        ProviderParty,
        where,
        at,
        what,
        npi=text(nm1.identification_code),
        name=text(nm1.name_last_or_organization_name),
    )


def map_270(model: Any, where: SetLocation) -> tuple[list[EligibilityInquiry], list[Fault]]:
    """One EligibilityInquiry per person the 270 asks about (subscriber or dependent)."""
    inquiries: list[EligibilityInquiry] = []
    faults: list[Fault] = []
    for index, (loop_2000a, loop_2000b, loop_2000c, member, dependent) in enumerate(_members(model)):
        what = f"inquiry {index + 1}"
        try:
            codes: list[str] = []
            loop = dependent.loop_2100d if dependent is not None else loop_2000c.loop_2100c
            for benefit in _each(getattr(loop, "loop_2110c", None) or getattr(loop, "loop_2110d", None)):
                eq = getattr(benefit, "eq_segment", None)
                codes += components(getattr(eq, "service_type_code", None), where.component)
            inquiries.append(
                _build(
                    EligibilityInquiry,
                    where,
                    where.nth("TRN", index),
                    what,
                    trace_number=_trace(member, where, what),
                    payer=_payer(loop_2000a.loop_2100a.nm1_segment, where, f"{what}, payer (2100A)"),
                    provider=_receiver(loop_2000b.loop_2100b.nm1_segment, where, f"{what}, provider (2100B)"),
                    subscriber=_person(loop_2000c.loop_2100c, where, f"{what}, subscriber (2100C)", True),
                    patient=_person(dependent.loop_2100d, where, f"{what}, dependent (2100D)", False)
                    if dependent is not None
                    else None,
                    service_type_codes=tuple(c for c in codes if c) or ("30",),
                    inquired_on=_bht_date(model, where),
                )
            )
        except ReadRefused as exc:
            faults.append(exc.fault)
    return inquiries, faults


def _benefit(eb: Any, where: SetLocation, what: str) -> Benefit:
    eb01 = code(eb.eligibility_benefit_information)
    at: At = lambda: where.holding("EB", 1, eb01)  # noqa: E731
    return _build(
        Benefit,
        where,
        at,
        what,
        code=code(eb.eligibility_benefit_information),
        coverage_level=code(eb.coverage_level_code),
        service_type_codes=tuple(components(eb.service_type_code, where.component)),
        insurance_type=code(eb.insurance_type_code),
        plan_description=text(eb.plan_coverage_description),
        period=code(eb.time_period_qualifier),
        amount_cents=optional_cents(eb.benefit_amount, where, at, "EB07"),
        percent=text(eb.benefit_percent),
        in_network=code(eb.inplan_network_indicator),
    )


def _rejection(where: SetLocation, *levels: Any) -> str:
    """AAA03 of the first rejecting AAA (AAA01 N) in the HL levels given (the member's first).

    Read from the segments, not from x12sdk's model (read.py gives its 271 parser no AAA): the AAAs of
    a level are those after its HL and before the next HL.
    """
    for level in levels:
        hl = where.holding("HL", 1, text(level.hl_segment.hierarchical_id_number))
        for aaa in where.between("AAA", hl, where.following("HL", hl)):
            if aaa.element(1) == _REJECTED:
                return aaa.element(3)
    return ""


def _plan_dates(loops: Sequence[Any], where: SetLocation) -> tuple[dt.date | None, dt.date | None]:
    begin: dt.date | None = None
    end: dt.date | None = None
    for loop in loops:
        for dtp in _each(getattr(loop, "dtp_segment", None)):
            qualifier = text(dtp.date_time_qualifier)
            at = where.following("DTP", None, qualifier)
            dates = period(dtp.date_time_period, where, at, "DTP03")
            if dates is None:
                continue
            if qualifier == _PLAN_BEGIN and begin is None:
                begin = dates[0]
            elif qualifier == _PLAN_END and end is None:
                end = dates[1]
            elif qualifier == _PLAN_PERIOD and begin is None:
                begin, end = dates
    return begin, end


def map_271(model: Any, where: SetLocation) -> tuple[list[EligibilityResponse], list[Fault]]:
    """One EligibilityResponse per person the 271 answers about (subscriber or dependent)."""
    responses: list[EligibilityResponse] = []
    faults: list[Fault] = []
    for index, (loop_2000a, loop_2000b, loop_2000c, member, dependent) in enumerate(_members(model)):
        what = f"answer {index + 1}"
        try:
            subscriber_loop = loop_2000c.loop_2100c
            loop = dependent.loop_2100d if dependent is not None else subscriber_loop
            benefits = tuple(
                _benefit(benefit.eb_segment, where, what)
                for benefit in _each(getattr(loop, "loop_2110c", None) or getattr(loop, "loop_2110d", None))
            )
            decided = next(
                (b for b in benefits if EligibilityStatus.from_eb01(b.code) is not EligibilityStatus.UNKNOWN),
                None,
            )
            begin, end = _plan_dates([loop, subscriber_loop], where)
            responses.append(
                _build(
                    EligibilityResponse,
                    where,
                    where.nth("TRN", index),
                    what,
                    trace_number=_trace(member, where, what),
                    payer=_payer(loop_2000a.loop_2100a.nm1_segment, where, f"{what}, payer (2100A)"),
                    provider_npi=_npi(loop_2000b.loop_2100b.nm1_segment),
                    subscriber=_person(subscriber_loop, where, f"{what}, subscriber (2100C)", True),
                    patient=_person(dependent.loop_2100d, where, f"{what}, dependent (2100D)", False)
                    if dependent is not None
                    else None,
                    status=EligibilityStatus.from_eb01(decided.code)
                    if decided is not None
                    else EligibilityStatus.UNKNOWN,
                    plan=decided.plan_description if decided is not None else "",
                    group_number=_ref(loop.ref_segment, "6P") or _ref(subscriber_loop.ref_segment, "6P"),
                    effective_on=begin,
                    expires_on=end,
                    benefits=benefits,
                    rejection_reason=_rejection(where, member, loop_2000c, loop_2000b, loop_2000a),
                    answered_at=_bht_time(model, where),
                )
            )
        except ReadRefused as exc:
            faults.append(exc.fault)
    aaa = where.nth("AAA", 0)
    if not responses and not faults and aaa is not None:
        # Rejected above the subscriber (2100A/2100B AAA): no subscriber and no TRN to match it back by.
        reason = (
            f"the payer rejected the request above the subscriber level (AAA03 {aaa.element(3) or '?'}): "
            "the answer names no subscriber and no trace number to match it to its inquiry"
        )
        faults.append(where.fault(MAPPING_RULE, reason, aaa, "AAA03"))
    return responses, faults
