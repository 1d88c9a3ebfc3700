"""HL7 v2 to canonical: ADT, BAR, DFT, RDE and RAS messages become event envelopes.

Mapped: ADT^A01-A08, A11, A12, A13 and A40 (merge); BAR^P01/P05/P06 (accounts and their DG1/PR1/DRG
coding); DFT^P03 (FT1 charges, credits, reversals and supply items); RDE^O11 (verified medication
orders) and RAS^O17 (administrations, which consume stock). The field-by-field tables are in
docs/mappings/.

The mapper reads messages through the fast parser (canonical.hl7v2.parser) and raises
:class:`~canonical.errors.InvalidMessageError` with a precise :class:`~canonical.errors.Fault` when a field
it needs is missing or malformed. Message types without a financial effect map to no events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TypeVar

from pydantic import ValidationError

from canonical import ids
from canonical.envelope import (
    ChargePayload,
    CodingPayload,
    EncounterPayload,
    EventEnvelope,
    EventType,
    MedicationAdministrationPayload,
    MedicationOrderPayload,
    MergePayload,
    Payload,
    SourceSystem,
)
from canonical.errors import Fault, InvalidMessageError
from canonical.hl7v2.datatypes import MAX_CENTS, parse_cents, parse_dt, parse_dtm
from canonical.hl7v2.parser import Hl7Message, Segment, parse_message
from canonical.models import (
    ActionCode,
    Address,
    AdministrationStatus,
    Charge,
    CodingUpdate,
    Diagnosis,
    Drg,
    Encounter,
    MedicationAdministration,
    MedicationOrder,
    Patient,
    PatientClass,
    PatientMerge,
    Procedure,
    TransactionType,
)

T = TypeVar("T")

ADT_EVENTS: dict[str, EventType] = {
    "A01": EventType.ENCOUNTER_ADMITTED,
    "A02": EventType.ENCOUNTER_TRANSFERRED,
    "A03": EventType.ENCOUNTER_DISCHARGED,
    "A04": EventType.ENCOUNTER_REGISTERED,
    "A05": EventType.ENCOUNTER_PREADMITTED,
    "A06": EventType.ENCOUNTER_TO_INPATIENT,
    "A07": EventType.ENCOUNTER_TO_OUTPATIENT,
    "A08": EventType.ENCOUNTER_UPDATED,
    "A11": EventType.ENCOUNTER_CANCELLED,
    "A12": EventType.TRANSFER_CANCELLED,
    "A13": EventType.DISCHARGE_CANCELLED,
}
BAR_EVENTS: dict[str, EventType] = {
    "P01": EventType.ACCOUNT_OPENED,
    "P05": EventType.ACCOUNT_UPDATED,
    "P06": EventType.ACCOUNT_ENDED,
}
SUPPORTED = frozenset(
    {("ADT", trigger) for trigger in ADT_EVENTS}
    | {("ADT", "A40")}
    | {("BAR", trigger) for trigger in BAR_EVENTS}
    | {("DFT", "P03"), ("RDE", "O11"), ("RAS", "O17")}
)
# FT1-7.3 coding systems that name stock items rather than services: such a line also consumes stock.
# Drugs (NDC-coded lines) are not here: the medication administration record (RAS) consumes them, and
# counting the pharmacy charge too would consume the same dose twice.
SUPPLY_CODE_SYSTEMS = frozenset({"SUPPLY", "SUP", "ITEM", "IM"})


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


def _patient(r: _Reader, pid: Segment | None = None) -> Patient:
    pid = pid if pid is not None else r.require_segment("PID")
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


def _encounter_id(msg: Hl7Message, pv1: Segment) -> str | None:
    visit = pv1.get(19).strip()
    if not visit:
        return None
    authority = pv1.get(19, 4) or msg.sending_facility or pv1.get(3, 4)
    return f"{authority}:{visit}"


def encounter_id_of(msg: Hl7Message) -> str | None:
    """Return the encounter id of a message (PV1-19.4 or MSH-4 or PV1-3.4 ':' PV1-19.1), None if unknown."""
    pv1 = msg.segment("PV1")
    return _encounter_id(msg, pv1) if pv1 is not None else None


def _encounter(r: _Reader, pv1: Segment | None = None) -> Encounter:
    pv1 = pv1 if pv1 is not None else r.require_segment("PV1")
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
    encounter_id = _encounter_id(r.msg, pv1)
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
    if kind is TransactionType.CREDIT:
        amount = -abs(extended)
    elif quantity < 0 < extended:
        amount = -extended  # a charge reversed by a negative quantity: the amount follows the quantity
    else:
        amount = extended
    code_system = ft1.get(7, 3)
    ndc = ft1.get(29, 1).strip()
    unit_cost = r.convert(ft1, "FT1-22", ft1.get(22, 1), parse_cents, "HL7-FT1-22-AMOUNT")
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
            code_system=code_system,
            description=ft1.get(7, 2) or ft1.get(8),
            quantity=quantity,
            unit_amount_cents=unit,
            amount_cents=amount,
            currency=ft1.get(11, 1, 2) or "USD",  # CP.1 is MO: amount & currency
            service_at=service_at,
            posted_at=r.dtm(ft1, 5),
            facility=ft1.get(13, 4) or encounter.facility,
            department=ft1.get(13, 1) or encounter.department,
            procedure_code=ft1.get(25, 1),
            ndc_code=ndc,
            filler_order_number=ft1.get(23, 1),
            unit_cost_cents=unit_cost,
            is_supply=code_system.upper() in SUPPLY_CODE_SYSTEMS,
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


def _decimal_milli(value: str) -> int:
    """Return a non-negative decimal amount in thousandths, rounded half up."""
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"amount must be a non-negative number: {value!r}")
    if number > MAX_QUANTITY:
        raise ValueError(f"amount out of range: {value!r}")
    return int((number * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _decimal_text(value: str) -> str:
    """Return a decimal string as sent, or raise ValueError when it is not a number."""
    if value:
        _decimal_milli(value)
    return value


def _optional_int(value: str) -> int | None:
    return int(value) if value.strip() else None


def _sequence(r: _Reader, seg: Segment, ordinal: int) -> int:
    raw = seg.get(1)
    if not raw.strip():
        return ordinal
    return r.convert(seg, f"{seg.name}-1", raw, int, f"HL7-{seg.name}-1-NUMBER")


def _diagnosis(r: _Reader, dg1: Segment, ordinal: int) -> Diagnosis:
    code = dg1.get(3, 1).strip()
    if not code:
        raise InvalidMessageError(
            r.fault(dg1, "DG1", "DG1-3", "HL7-DG1-3-MISSING", "diagnosis code is empty")
        )
    return Diagnosis(
        sequence=_sequence(r, dg1, ordinal),
        code=code,
        description=dg1.get(3, 2) or dg1.get(4),
        code_system=dg1.get(3, 3) or dg1.get(2),
        diagnosis_type=dg1.get(6),
        priority=r.convert(dg1, "DG1-15", dg1.get(15), _optional_int, "HL7-DG1-15-NUMBER"),
        diagnosed_at=r.dtm(dg1, 5),
    )


def _procedure(r: _Reader, pr1: Segment, ordinal: int) -> Procedure:
    code = pr1.get(3, 1).strip()
    if not code:
        raise InvalidMessageError(
            r.fault(pr1, "PR1", "PR1-3", "HL7-PR1-3-MISSING", "procedure code is empty")
        )
    return Procedure(
        sequence=_sequence(r, pr1, ordinal),
        code=code,
        description=pr1.get(3, 2) or pr1.get(4),
        code_system=pr1.get(3, 3) or pr1.get(2),
        performed_at=r.dtm(pr1, 5),
        priority=r.convert(pr1, "PR1-14", pr1.get(14), _optional_int, "HL7-PR1-14-NUMBER"),
        surgeon_id=pr1.get(11, 1),
    )


def _drg(r: _Reader, seg: Segment) -> Drg:
    code = seg.get(1, 1).strip()
    if not code:
        raise InvalidMessageError(r.fault(seg, "DRG", "DRG-1", "HL7-DRG-1-MISSING", "DRG code is empty"))
    return Drg(code=code, description=seg.get(1, 2), code_system=seg.get(1, 3), assigned_at=r.dtm(seg, 2))


def _groups(msg: Hl7Message, starts: str) -> list[list[Segment]]:
    """Split the segments after the first ``starts`` segment into groups, each beginning with one."""
    groups: list[list[Segment]] = []
    for seg in msg.segments:
        if seg.name == starts:
            groups.append([seg])
        elif groups:
            groups[-1].append(seg)
    return groups


def _order_id(r: _Reader, orc: Segment | None) -> str:
    if orc is None:
        raise InvalidMessageError(r.fault(None, "ORC", "", "HL7-ORC-MISSING", "ORC segment is required"))
    order_id = orc.get(2, 1).strip() or orc.get(3, 1).strip()
    if not order_id:
        raise InvalidMessageError(
            r.fault(
                orc,
                "ORC",
                "ORC-2",
                "HL7-ORC-2-MISSING",
                "neither placer (ORC-2) nor filler (ORC-3) order number",
            )
        )
    return order_id


def _medication_order(r: _Reader, orc: Segment | None, rxe: Segment, encounter: Encounter) -> MedicationOrder:
    order_id = _order_id(r, orc)
    assert orc is not None
    code = rxe.get(2, 1).strip()
    if not code:
        raise InvalidMessageError(r.fault(rxe, "RXE", "RXE-2", "HL7-RXE-2-MISSING", "give code is empty"))
    return MedicationOrder(
        order_id=order_id,
        order_control=orc.get(1),
        encounter_id=encounter.encounter_id,
        medication_code=code,
        medication_name=rxe.get(2, 2),
        code_system=rxe.get(2, 3),
        give_amount=r.convert(rxe, "RXE-3", rxe.get(3), _decimal_text, "HL7-RXE-3-NUMBER"),
        give_units=rxe.get(5, 1),
        dispense_amount=r.convert(rxe, "RXE-10", rxe.get(10), _decimal_text, "HL7-RXE-10-NUMBER"),
        dispense_units=rxe.get(11, 1),
        ordered_at=r.dtm(orc, 9),
        ordering_provider_id=orc.get(12, 1),
    )


def _administration(
    r: _Reader, orc: Segment | None, rxa: Segment, encounter: Encounter
) -> MedicationAdministration:
    order_id = _order_id(r, orc)
    code = rxa.get(5, 1).strip()
    if not code:
        raise InvalidMessageError(
            r.fault(rxa, "RXA", "RXA-5", "HL7-RXA-5-MISSING", "administered code is empty")
        )
    raw_amount = rxa.get(6)
    if not raw_amount.strip():
        raise InvalidMessageError(
            r.fault(rxa, "RXA", "RXA-6", "HL7-RXA-6-MISSING", "administered amount is empty")
        )
    amount = r.convert(rxa, "RXA-6", raw_amount, _decimal_milli, "HL7-RXA-6-NUMBER")
    started = r.dtm(rxa, 3)
    if started is None:
        raise InvalidMessageError(
            r.fault(rxa, "RXA", "RXA-3", "HL7-RXA-3-MISSING", "start of administration is empty")
        )
    raw_status = rxa.get(20)
    raw_action = rxa.get(21)
    try:
        status = AdministrationStatus(raw_status) if raw_status else AdministrationStatus.COMPLETE
    except ValueError:
        raise InvalidMessageError(
            r.fault(
                rxa,
                "RXA",
                "RXA-20",
                "HL7-RXA-20-CODE",
                "completion status is not in HL7 table 0322",
                raw_status,
            )
        ) from None
    try:
        action = ActionCode(raw_action) if raw_action else ActionCode.ADD
    except ValueError:
        raise InvalidMessageError(
            r.fault(
                rxa, "RXA", "RXA-21", "HL7-RXA-21-CODE", "action code is not in HL7 table 0206", raw_action
            )
        ) from None
    give_sub, admin_sub = rxa.get(1) or "0", rxa.get(2) or "1"
    return MedicationAdministration(
        administration_id=f"{order_id}/{give_sub}/{admin_sub}",
        order_id=order_id,
        encounter_id=encounter.encounter_id,
        medication_code=code,
        medication_name=rxa.get(5, 2),
        code_system=rxa.get(5, 3),
        amount_milli=amount,
        units=rxa.get(7, 1),
        administered_at=started,
        status=status,
        action=action,
        facility=rxa.get(11, 4) or encounter.facility,
        department=rxa.get(11, 1) or encounter.department,
    )


def _merge(r: _Reader, pid: Segment, mrg: Segment) -> PatientMerge:
    prior = mrg.get(1, 1).strip()
    if not prior:
        raise InvalidMessageError(
            r.fault(mrg, "MRG", "MRG-1", "HL7-MRG-1-MISSING", "prior patient identifier is empty")
        )
    return PatientMerge(
        surviving=_patient(r, pid),
        prior_mrn=prior,
        prior_assigning_authority=mrg.get(1, 4),
        prior_account_number=mrg.get(3, 1),
        prior_visit_number=mrg.get(5, 1),
    )


class _Emitter:
    """Build the envelopes of one message: ids from (sender, control id, position)."""

    def __init__(self, r: _Reader, occurred_at: dt.datetime) -> None:
        msg = r.msg
        self.sender = msg.sender
        self.msg = msg
        self.occurred_at = occurred_at
        self.correlation = ids.correlation_id(self.sender, msg.control_id)
        self.message_type = msg.event_code
        self.events: list[EventEnvelope] = []

    def event_id(self, position: int) -> str:
        return ids.event_id(self.sender, self.msg.control_id, position)

    def emit(self, position: int, key: str, event_type: EventType, payload: Payload) -> None:
        self.events.append(
            EventEnvelope(
                event_id=self.event_id(position),
                correlation_id=self.correlation,
                encounter_id=key,
                source_system=SourceSystem.HL7V2,
                source_sender=self.sender,
                source_message_id=self.msg.control_id,
                source_message_type=self.message_type,
                source_position=position,
                event_type=event_type,
                occurred_at=self.occurred_at,
                payload=payload,
            )
        )


def _map_adt(r: _Reader, out: _Emitter, trigger: str) -> None:
    encounter = _encounter(r)
    out.emit(
        0,
        encounter.encounter_id,
        ADT_EVENTS[trigger],
        EncounterPayload(patient=_patient(r), encounter=encounter),
    )


def _map_merge(r: _Reader, out: _Emitter) -> None:
    # ADT^A40 may repeat its PATIENT group (PID, PD1, MRG, PV1): each PID merges the MRG that follows it.
    pairs = [(group[0], next((s for s in group if s.name == "MRG"), None)) for group in _groups(r.msg, "PID")]
    if not pairs:
        r.require_segment("PID")
    for position, (pid, mrg) in enumerate(pairs):
        if mrg is None:
            raise InvalidMessageError(
                r.fault(pid, "MRG", "", "HL7-MRG-MISSING", "ADT^A40 patient group has no MRG segment")
            )
        merge = _merge(r, pid, mrg)
        key = f"patient:{merge.surviving.assigning_authority}:{merge.surviving.mrn}"
        out.emit(position, key, EventType.PATIENT_MERGED, MergePayload(merge=merge))


def _map_bar(r: _Reader, out: _Emitter, trigger: str) -> None:
    patient = _patient(r)
    visits = _groups(r.msg, "PV1")
    if not visits:
        r.require_segment("PV1")
    position = 0
    for visit in visits:
        encounter = _encounter(r, visit[0])
        out.emit(
            position,
            encounter.encounter_id,
            BAR_EVENTS[trigger],
            EncounterPayload(patient=patient, encounter=encounter),
        )
        position += 1
        dg1s = [s for s in visit if s.name == "DG1"]
        pr1s = [s for s in visit if s.name == "PR1"]
        drgs = [s for s in visit if s.name == "DRG"]
        if dg1s or pr1s or drgs:
            coding = CodingUpdate(
                encounter_id=encounter.encounter_id,
                diagnoses=tuple(_diagnosis(r, s, n) for n, s in enumerate(dg1s, start=1)),
                procedures=tuple(_procedure(r, s, n) for n, s in enumerate(pr1s, start=1)),
                drg=_drg(r, drgs[0]) if drgs else None,
            )
            out.emit(
                position,
                encounter.encounter_id,
                EventType.CODING_UPDATED,
                CodingPayload(coding=coding, encounter=encounter),
            )
        position += 1


def _map_dft(r: _Reader, out: _Emitter) -> None:
    encounter = _encounter(r)
    patient = _patient(r)
    ft1s = r.msg.segments_named("FT1")
    if not ft1s:
        raise InvalidMessageError(
            r.fault(None, "FT1", "", "HL7-FT1-MISSING", "DFT^P03 carries no FT1 segment")
        )
    # The FT1 ordinal, not the segment index: an extra segment elsewhere in a resent message must not
    # change the ids of its charges.
    for position, ft1 in enumerate(ft1s):
        charge = _charge(r, ft1, out.event_id(position), encounter)
        credit = charge.is_reversal or charge.transaction_type is TransactionType.CREDIT
        event_type = EventType.CHARGE_CREDITED if credit else EventType.CHARGE_POSTED
        out.emit(
            position,
            encounter.encounter_id,
            event_type,
            ChargePayload(charge=charge, encounter=encounter, patient=patient),
        )


def _map_orders(
    r: _Reader,
    out: _Emitter,
    name: str,
    event_of: Callable[[Segment | None, Segment, Encounter], tuple[EventType, Payload]],
    missing: Fault,
) -> None:
    """Emit one event per ``name`` segment (RXE, RXA), each read with the ORC that precedes it."""
    encounter = _encounter(r)
    position = 0
    orc: Segment | None = None
    for seg in r.msg.segments:
        if seg.name == "ORC":
            orc = seg
        elif seg.name == name:
            event_type, payload = event_of(orc, seg, encounter)
            out.emit(position, encounter.encounter_id, event_type, payload)
            position += 1
    if not position:
        raise InvalidMessageError(missing)


def _map_rde(r: _Reader, out: _Emitter) -> None:
    def ordered(orc: Segment | None, rxe: Segment, encounter: Encounter) -> tuple[EventType, Payload]:
        order = _medication_order(r, orc, rxe, encounter)
        return EventType.MEDICATION_ORDERED, MedicationOrderPayload(order=order, encounter=encounter)

    missing = r.fault(None, "RXE", "", "HL7-RXE-MISSING", "RDE^O11 carries no RXE segment")
    _map_orders(r, out, "RXE", ordered, missing)


def _map_ras(r: _Reader, out: _Emitter) -> None:
    def given(orc: Segment | None, rxa: Segment, encounter: Encounter) -> tuple[EventType, Payload]:
        dose = _administration(r, orc, rxa, encounter)
        return EventType.MEDICATION_ADMINISTERED, MedicationAdministrationPayload(
            administration=dose, encounter=encounter
        )

    missing = r.fault(None, "RXA", "", "HL7-RXA-MISSING", "RAS^O17 carries no RXA segment")
    _map_orders(r, out, "RXA", given, missing)


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
    message_type, trigger = financial_type(msg)
    if (message_type, trigger) not in SUPPORTED:
        return []
    out = _Emitter(r, _occurred_at(r))
    try:
        if message_type == "ADT":
            if trigger == "A40":
                _map_merge(r, out)
            else:
                _map_adt(r, out, trigger)
        elif message_type == "BAR":
            _map_bar(r, out, trigger)
        elif message_type == "DFT":
            _map_dft(r, out)
        elif message_type == "RDE":
            _map_rde(r, out)
        else:
            _map_ras(r, out)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidMessageError(
            r.fault(None, message_type, "", "HL7-CANONICAL-INVALID", f"{first['loc']}: {first['msg']}")
        ) from None
    return out.events


def financial_type(msg: Hl7Message) -> tuple[str, str]:
    """Return (MSH-9.1, trigger): the trigger from MSH-9.2, else EVN-1 for an ADT without one."""
    message_type = msg.message_type
    trigger = msg.trigger_event
    if message_type == "ADT" and not trigger:
        evn = msg.segment("EVN")
        trigger = evn.get(1) if evn is not None else ""
    return message_type, trigger
