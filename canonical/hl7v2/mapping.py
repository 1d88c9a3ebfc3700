"""HL7 v2 to canonical: ADT^A01/A03/A04/A08 and DFT^P03 become event envelopes.

The mapper reads messages through the fast parser (canonical.hl7v2.parser) and raises
:class:`~canonical.errors.InvalidMessageError` with a precise :class:`~canonical.errors.Fault` when a field
it needs is missing or malformed. Message types without a financial effect map to no events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

from canonical import ids
from canonical.envelope import (
    ChargePayload,
    EncounterPayload,
    EventEnvelope,
    EventType,
    SourceSystem,
)
from canonical.errors import Fault, InvalidMessageError
from canonical.hl7v2.datatypes import MAX_CENTS, parse_cents, parse_dt, parse_dtm
from canonical.hl7v2.parser import Hl7Message, Segment, parse_message
from canonical.models import Address, Charge, Encounter, Patient, PatientClass, TransactionType

T = TypeVar("T")

ADT_EVENTS: dict[str, EventType] = {
    "A01": EventType.ENCOUNTER_ADMITTED,
    "A03": EventType.ENCOUNTER_DISCHARGED,
    "A04": EventType.ENCOUNTER_REGISTERED,
    "A08": EventType.ENCOUNTER_UPDATED,
}
SUPPORTED = frozenset({("ADT", trigger) for trigger in ADT_EVENTS} | {("DFT", "P03")})


class _Reader:
    """Read fields of one message, turning every conversion failure into a located fault."""

    def __init__(self, msg: Hl7Message, default_tz: dt.tzinfo) -> None:
        self.msg = msg
        self.tz = default_tz
        self.control_id = msg.control_id

    def fault(
        self, seg: Segment | None, name: str, field: str, rule: str, reason: str, found: str = ""
    ) -> Fault:
        return Fault(
            rule=rule,
            reason=reason,
            message_id=self.control_id,
            segment=name,
            field=field,
            position=seg.index if seg is not None else None,
            found=found,
        )

    def require_segment(self, name: str) -> Segment:
        seg = self.msg.segment(name)
        if seg is None:
            raise InvalidMessageError(
                self.fault(None, name, "", f"HL7-{name}-MISSING", f"{name} segment is required")
            )
        return seg

    def convert(self, seg: Segment, field: str, raw: str, parse: Callable[[str], T], rule: str) -> T:
        try:
            return parse(raw)
        except ValueError as exc:
            raise InvalidMessageError(self.fault(seg, seg.name, field, rule, str(exc), raw)) from None

    def dtm(self, seg: Segment, number: int) -> dt.datetime | None:
        raw = seg.get(number)
        return self.convert(seg, f"{seg.name}-{number}", raw, lambda v: parse_dtm(v, self.tz), "HL7-DTM")


def _sender(msg: Hl7Message) -> str:
    return f"{msg.sending_application}^{msg.sending_facility}"


def _patient(r: _Reader) -> Patient:
    pid = r.require_segment("PID")
    mrn = pid.get(3).strip()
    if not mrn:
        raise InvalidMessageError(
            r.fault(pid, "PID", "PID-3", "HL7-PID3-MISSING", "patient identifier is empty")
        )
    street, city, state, postal = pid.get(11, 1), pid.get(11, 3), pid.get(11, 4), pid.get(11, 5)
    address = Address(street=street, city=city, state=state, postal_code=postal) if street or city else None
    birth = r.convert(pid, "PID-7", pid.get(7), parse_dt, "HL7-DT")
    return Patient(
        mrn=mrn,
        assigning_authority=pid.get(3, 4),
        family_name=pid.get(5, 1),
        given_name=pid.get(5, 2),
        birth_date=birth,
        sex=pid.get(8),
        address=address,
        phone=pid.get(13),
    )


def encounter_id_of(msg: Hl7Message) -> str | None:
    """Return the encounter id of a message (PV1-19.4 or MSH-4 or PV1-3.4 ':' PV1-19.1), None if unknown."""
    pv1 = msg.segment("PV1")
    visit = pv1.get(19).strip() if pv1 is not None else ""
    if pv1 is None or not visit:
        return None
    authority = pv1.get(19, 4) or msg.sending_facility or pv1.get(3, 4)
    return f"{authority}:{visit}"


def _encounter(r: _Reader) -> Encounter:
    pv1 = r.require_segment("PV1")
    visit = pv1.get(19).strip()
    if not visit:
        raise InvalidMessageError(
            r.fault(pv1, "PV1", "PV1-19", "HL7-PV1-19-MISSING", "visit number (the encounter id) is empty")
        )
    facility = pv1.get(3, 4) or r.msg.sending_facility
    if not facility:
        raise InvalidMessageError(
            r.fault(pv1, "PV1", "PV1-3.4", "HL7-FACILITY-MISSING", "no facility in PV1-3.4 nor MSH-4")
        )
    encounter_id = encounter_id_of(r.msg)
    assert encounter_id is not None  # PV1-19 was checked above
    pid = r.msg.segment("PID")
    raw_class = pv1.get(2)
    try:
        patient_class = PatientClass(raw_class) if raw_class else PatientClass.UNKNOWN
    except ValueError:
        raise InvalidMessageError(
            r.fault(
                pv1, "PV1", "PV1-2", "HL7-PV1-2-CODE", "patient class is not in HL7 table 0004", raw_class
            )
        ) from None
    return Encounter(
        encounter_id=encounter_id,
        facility=facility,
        department=pv1.get(3, 1),
        room=pv1.get(3, 2),
        bed=pv1.get(3, 3),
        patient_class=patient_class,
        hospital_service=pv1.get(10),
        attending_provider_id=pv1.get(7, 1),
        account_number=pid.get(18) if pid is not None else "",
        admitted_at=r.dtm(pv1, 44),
        discharged_at=r.dtm(pv1, 45),
    )


def _occurred_at(r: _Reader) -> dt.datetime:
    evn = r.msg.segment("EVN")
    when = r.dtm(evn, 2) if evn is not None else None
    if when is None:
        msh = r.require_segment("MSH")
        when = r.dtm(msh, 7)
    if when is None:
        msh = r.require_segment("MSH")
        raise InvalidMessageError(
            r.fault(msh, "MSH", "MSH-7", "HL7-MSH-7-MISSING", "message date/time is empty")
        )
    return when


def _charge(r: _Reader, ft1: Segment, event_id: str, encounter: Encounter) -> Charge:
    raw_type = ft1.get(6)
    try:
        kind = TransactionType(raw_type)
    except ValueError:
        raise InvalidMessageError(
            r.fault(ft1, "FT1", "FT1-6", "HL7-FT1-6-CODE", "transaction type must be CG or CD", raw_type)
        ) from None
    code = ft1.get(7, 1).strip()
    if not code:
        raise InvalidMessageError(
            r.fault(ft1, "FT1", "FT1-7", "HL7-FT1-7-MISSING", "transaction code is empty")
        )
    quantity_raw = ft1.get(10) or "1"
    quantity = r.convert(ft1, "FT1-10", quantity_raw, _whole_number, "HL7-FT1-10-NUMBER")
    unit = r.convert(ft1, "FT1-12", ft1.get(12, 1), parse_cents, "HL7-FT1-12-AMOUNT")
    extended = r.convert(ft1, "FT1-11", ft1.get(11, 1), parse_cents, "HL7-FT1-11-AMOUNT")
    if extended is None:
        if unit is None:
            raise InvalidMessageError(
                r.fault(
                    ft1, "FT1", "FT1-11", "HL7-FT1-11-MISSING", "neither extended (FT1-11) nor unit amount"
                )
            )
        extended = unit * quantity
        if abs(extended) > MAX_CENTS:
            raise InvalidMessageError(
                r.fault(
                    ft1, "FT1", "FT1-12", "HL7-FT1-12-AMOUNT", "unit amount times quantity is out of range"
                )
            )
    amount = -abs(extended) if kind is TransactionType.CREDIT else extended
    service_at = r.dtm(ft1, 4)
    if service_at is None:
        raise InvalidMessageError(
            r.fault(ft1, "FT1", "FT1-4", "HL7-FT1-4-MISSING", "transaction date is empty")
        )
    try:
        return Charge(
            charge_id=event_id,
            encounter_id=encounter.encounter_id,
            transaction_id=ft1.get(2),
            transaction_type=kind,
            charge_code=code,
            code_system=ft1.get(7, 3),
            description=ft1.get(7, 2) or ft1.get(8),
            quantity=quantity,
            unit_amount_cents=unit,
            amount_cents=amount,
            currency=ft1.get(11, 1, 2) or "USD",  # CP.1 is MO: amount & currency
            service_at=service_at,
            posted_at=r.dtm(ft1, 5),
            facility=ft1.get(13, 4) or encounter.facility,
            department=ft1.get(13, 1) or encounter.department,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidMessageError(
            r.fault(ft1, "FT1", "FT1", "HL7-FT1-INVALID", f"{first['loc']}: {first['msg']}")
        ) from None


MAX_QUANTITY = 1_000_000


def _whole_number(value: str) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"quantity must be a whole number: {value!r}")
    if abs(number) > MAX_QUANTITY:
        raise ValueError(f"quantity out of range: {value!r}")
    return int(number)


def canonicalize(data: bytes | Hl7Message, *, default_tz: dt.tzinfo = dt.UTC) -> list[EventEnvelope]:
    """Map one HL7 v2 message to canonical events; an empty list means no financial effect.

    Raises DecodeError when the bytes are not HL7 and InvalidMessageError when a required field is missing
    or malformed; both carry a Fault naming the message, segment, field and position.
    """
    msg = data if isinstance(data, Hl7Message) else parse_message(data)
    r = _Reader(msg, default_tz)
    msh = r.require_segment("MSH")
    if not msg.control_id:
        raise InvalidMessageError(
            r.fault(msh, "MSH", "MSH-10", "HL7-MSH-10-MISSING", "message control id is empty")
        )
    message_type = msg.message_type
    trigger = msg.trigger_event
    if message_type == "ADT" and not trigger:
        evn = msg.segment("EVN")
        trigger = evn.get(1) if evn is not None else ""
    if (message_type, trigger) not in SUPPORTED:
        return []
    sender = _sender(msg)
    correlation = ids.correlation_id(sender, msg.control_id)
    occurred_at = _occurred_at(r)
    encounter = _encounter(r)
    patient = _patient(r)

    def envelope(
        position: int, event_type: EventType, payload: EncounterPayload | ChargePayload
    ) -> EventEnvelope:
        return EventEnvelope(
            event_id=ids.event_id(sender, msg.control_id, position),
            correlation_id=correlation,
            encounter_id=encounter.encounter_id,
            source_system=SourceSystem.HL7V2,
            source_sender=sender,
            source_message_id=msg.control_id,
            source_position=position,
            event_type=event_type,
            occurred_at=occurred_at,
            payload=payload,
        )

    if message_type == "ADT":
        return [envelope(0, ADT_EVENTS[trigger], EncounterPayload(patient=patient, encounter=encounter))]

    ft1s = msg.segments_named("FT1")
    if not ft1s:
        raise InvalidMessageError(
            r.fault(None, "FT1", "", "HL7-FT1-MISSING", "DFT^P03 carries no FT1 segment")
        )
    events = []
    # The FT1 ordinal, not the segment index: an extra segment elsewhere in a resent message must not
    # change the ids of its charges.
    for position, ft1 in enumerate(ft1s):
        charge = _charge(r, ft1, ids.event_id(sender, msg.control_id, position), encounter)
        event_type = (
            EventType.CHARGE_CREDITED
            if charge.transaction_type is TransactionType.CREDIT
            else EventType.CHARGE_POSTED
        )
        events.append(
            envelope(position, event_type, ChargePayload(charge=charge, encounter=encounter, patient=patient))
        )
    return events
