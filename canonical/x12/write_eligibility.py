"""Write eligibility inquiries (270) and their answers (271), both 005010X279A1.

hcsync sends the 270; the reference payer answers with the 271. Each functional group (GS01 HS for the
270, HB for the 271) holds one transaction set per payer and provider, with one subscriber loop (HL 22)
per inquiry or answer in the order given.

The 2000C trace (TRN) links an answer to its inquiry. TRN02 is the inquiry's trace number; TRN03, the
originating company, is ``9`` (a number the originator assigns) followed by the first nine digits of
the provider's NPI. Both sides know the NPI, so the 271 repeats the 270's TRN03 without the canonical
EligibilityResponse having to carry it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

from canonical.revenue_cycle import (
    Benefit,
    EligibilityInquiry,
    EligibilityResponse,
    PayerParty,
    Person,
)
from canonical.x12.write import Envelope, GroupSpec, SetWriter, date8, interchange, time4

__all__ = ["GUIDE_ELIGIBILITY", "write_270", "write_271"]

GUIDE_ELIGIBILITY = "005010X279A1"
_NAME_LAST_MAX = 60
_NAME_FIRST_MAX = 35
_ID_MAX = 80
_REF_MAX = 50
_TRACE_MAX = 50
_SERVICE_TYPE_MAX = 2  # EQ01 / EB03 codes
_SERVICE_TYPES_MAX = 99  # EQ01 and EB03 repeat up to 99 times
_PLAN_MAX = 50  # EB05
_PERCENT_MAX = 10  # EB08
_ORIGINATOR_PREFIX = "9"  # TRN03: an identifier the originator assigns


def write_270(inquiries: Sequence[EligibilityInquiry], envelope: Envelope) -> bytes:
    """Write the inquiries as one interchange of one 270 group, one set per payer and provider."""
    sets: dict[tuple[str, str], list[EligibilityInquiry]] = {}
    for inquiry in inquiries:
        sets.setdefault((inquiry.payer.payer_id, inquiry.provider.npi), []).append(inquiry)
    writers: list[Callable[[SetWriter], None]] = [
        partial(_write_270, envelope, group) for group in sets.values()
    ]
    return interchange(
        envelope, [GroupSpec(functional_id="HS", guide=GUIDE_ELIGIBILITY, set_code="270", sets=writers)]
    )


def write_271(
    responses: Sequence[EligibilityResponse], envelope: Envelope, *, provider_names: Mapping[str, str]
) -> bytes:
    """Write the answers as one interchange of one 271 group, one set per payer and provider.

    ``provider_names`` maps an NPI to the provider's name (loop 2100B NM103, which the answer repeats
    from the inquiry; the canonical EligibilityResponse keeps only the NPI).

    A rejected inquiry (``rejection_reason`` set) gets an AAA in loop 2100C saying it is not valid
    (AAA01 N) with the reason and "please correct and resubmit" (AAA04 C).
    """
    sets: dict[tuple[str, str], list[EligibilityResponse]] = {}
    for response in responses:
        sets.setdefault((response.payer.payer_id, response.provider_npi), []).append(response)
    writers: list[Callable[[SetWriter], None]] = [
        partial(_write_271, envelope, provider_names, group) for group in sets.values()
    ]
    return interchange(
        envelope, [GroupSpec(functional_id="HB", guide=GUIDE_ELIGIBILITY, set_code="271", sets=writers)]
    )


def _source_and_receiver(w: SetWriter, payer: PayerParty, provider_name: str, npi: str) -> None:
    """HL 20 with 2100A (the payer) and HL 21 with 2100B (the provider)."""
    w.loop = "2100A"
    w.add("HL", "1", "", "20", "1")
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
    w.loop = "2100B"
    w.add("HL", "2", "1", "21", "1")
    if not npi:
        raise w.refuse("NM109", "the information receiver's NPI is required (it also makes TRN03)")
    w.add(
        "NM1",
        "1P",
        "2",
        w.text(provider_name, "NM103", _NAME_LAST_MAX),
        "",
        "",
        "",
        "",
        "XX",
        npi,
    )


def _subscriber(w: SetWriter, hl: int, trace_type: str, trace: str, npi: str, person: Person) -> None:
    """HL 22 with the trace and the subscriber's name (2100C NM1*IL)."""
    w.loop = "2000C"
    w.add("HL", str(hl), "2", "22", "0")
    w.add("TRN", trace_type, w.text(trace, "TRN02", _TRACE_MAX), _ORIGINATOR_PREFIX + npi[:9])
    w.loop = "2100C"
    w.add(
        "NM1",
        "IL",
        "1",
        w.text(person.family_name, "NM103", _NAME_LAST_MAX),
        w.text(person.given_name, "NM104", _NAME_FIRST_MAX, required=False),
        "",
        "",
        "",
        "MI",
        w.text(person.member_id, "NM109", _ID_MAX),
    )


def _demographics(w: SetWriter, person: Person) -> None:
    if person.birth_date is not None:
        w.add("DMG", "D8", date8(person.birth_date), person.gender.value)


def _write_270(envelope: Envelope, inquiries: list[EligibilityInquiry], w: SetWriter) -> None:
    first = inquiries[0]
    w.add("BHT", "0022", "13", w.where.replace("/", ""), date8(first.inquired_on), time4(envelope.at))
    _source_and_receiver(w, first.payer, first.provider.name, first.provider.npi)
    for hl, inquiry in enumerate(inquiries, 3):
        _subscriber(w, hl, "1", inquiry.trace_number, inquiry.provider.npi, inquiry.subscriber)
        _demographics(w, inquiry.subscriber)
        w.loop = "2110C"
        if len(inquiry.service_type_codes) > _SERVICE_TYPES_MAX:
            raise w.refuse("EQ01", f"EQ01 repeats at most {_SERVICE_TYPES_MAX} times")
        w.add("EQ", w.repeated(inquiry.service_type_codes, "EQ01", _SERVICE_TYPE_MAX))


def _write_271(
    envelope: Envelope, names: Mapping[str, str], responses: list[EligibilityResponse], w: SetWriter
) -> None:
    first = responses[0]
    answered = first.answered_at
    w.add("BHT", "0022", "11", w.where.replace("/", ""), date8(answered.date()), time4(answered))
    _source_and_receiver(w, first.payer, names.get(first.provider_npi, ""), first.provider_npi)
    for hl, response in enumerate(responses, 3):
        _subscriber(w, hl, "2", response.trace_number, response.provider_npi, response.subscriber)
        if response.group_number:
            w.add("REF", "6P", w.text(response.group_number, "REF02", _REF_MAX))
        if response.rejection_reason:
            w.add("AAA", "N", "", w.text(response.rejection_reason, "AAA03", 2), "C")
        _demographics(w, response.subscriber)
        if response.effective_on is not None:
            w.add("DTP", "346", "D8", date8(response.effective_on))
        if response.expires_on is not None:
            w.add("DTP", "347", "D8", date8(response.expires_on))
        for benefit in response.benefits:
            _benefit(w, benefit)


def _benefit(w: SetWriter, benefit: Benefit) -> None:
    """Loop 2110C EB: code, level, service types (repeating), insurance type, plan, amount, percent."""
    w.loop = "2110C"
    if len(benefit.service_type_codes) > _SERVICE_TYPES_MAX:
        raise w.refuse("EB03", f"EB03 repeats at most {_SERVICE_TYPES_MAX} times")
    w.add(
        "EB",
        w.text(benefit.code, "EB01", 2),
        w.text(benefit.coverage_level, "EB02", 3, required=False),
        w.repeated(benefit.service_type_codes, "EB03", _SERVICE_TYPE_MAX),
        w.text(benefit.insurance_type, "EB04", 3, required=False),
        w.text(benefit.plan_description, "EB05", _PLAN_MAX, required=False),
        w.text(benefit.period, "EB06", 2, required=False),
        w.money(benefit.amount_cents, "EB07") if benefit.amount_cents is not None else "",
        w.text(benefit.percent, "EB08", _PERCENT_MAX, required=False),
        "",
        "",
        "",
        w.text(benefit.in_network, "EB12", 1, required=False),
    )
