"""RDE^O11 and RAS^O17 to canonical: verified medication orders and the doses given
(docs/mappings/rde.md, docs/mappings/ras.md)."""

from __future__ import annotations

from collections.abc import Callable

from canonical.envelope import (
    EventType,
    MedicationAdministrationPayload,
    MedicationOrderPayload,
    Payload,
)
from canonical.errors import Fault, InvalidMessageError
from canonical.hl7v2.emitter import Emitter
from canonical.hl7v2.parser import Segment
from canonical.hl7v2.patient_visit import encounter
from canonical.hl7v2.reader import Reader, decimal_milli, decimal_text
from canonical.models import (
    ActionCode,
    AdministrationStatus,
    Encounter,
    MedicationAdministration,
    MedicationOrder,
)


def _order_id(r: Reader, orc: Segment | None) -> str:
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


def _medication_order(r: Reader, orc: Segment | None, rxe: Segment, visit: Encounter) -> MedicationOrder:
    order_id = _order_id(r, orc)
    assert orc is not None
    code = rxe.get(2, 1).strip()
    if not code:
        raise InvalidMessageError(r.fault(rxe, "RXE", "RXE-2", "HL7-RXE-2-MISSING", "give code is empty"))
    return MedicationOrder(
        order_id=order_id,
        order_control=orc.get(1),
        encounter_id=visit.encounter_id,
        medication_code=code,
        medication_name=rxe.get(2, 2),
        code_system=rxe.get(2, 3),
        give_amount=r.convert(rxe, "RXE-3", rxe.get(3), decimal_text, "HL7-RXE-3-NUMBER"),
        give_units=rxe.get(5, 1),
        dispense_amount=r.convert(rxe, "RXE-10", rxe.get(10), decimal_text, "HL7-RXE-10-NUMBER"),
        dispense_units=rxe.get(11, 1),
        ordered_at=r.dtm(orc, 9),
        ordering_provider_id=orc.get(12, 1),
    )


def _administration(
    r: Reader, orc: Segment | None, rxa: Segment, visit: Encounter
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
    amount = r.convert(rxa, "RXA-6", raw_amount, decimal_milli, "HL7-RXA-6-NUMBER")
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
        encounter_id=visit.encounter_id,
        medication_code=code,
        medication_name=rxa.get(5, 2),
        code_system=rxa.get(5, 3),
        amount_milli=amount,
        units=rxa.get(7, 1),
        administered_at=started,
        status=status,
        action=action,
        facility=rxa.get(11, 4) or visit.facility,
        department=rxa.get(11, 1) or visit.department,
    )


def _map_orders(
    r: Reader,
    out: Emitter,
    name: str,
    event_of: Callable[[Segment | None, Segment, Encounter], tuple[EventType, Payload]],
    missing: Fault,
) -> None:
    """Emit one event per ``name`` segment (RXE, RXA), each read with the ORC that precedes it."""
    visit = encounter(r)
    position = 0
    orc: Segment | None = None
    for seg in r.msg.segments:
        if seg.name == "ORC":
            orc = seg
        elif seg.name == name:
            event_type, payload = event_of(orc, seg, visit)
            out.emit(position, visit.encounter_id, event_type, payload)
            position += 1
    if not position:
        raise InvalidMessageError(missing)


def map_rde(r: Reader, out: Emitter) -> None:
    """Emit one medication.ordered event per RXE of an RDE^O11."""

    def ordered(orc: Segment | None, rxe: Segment, visit: Encounter) -> tuple[EventType, Payload]:
        order = _medication_order(r, orc, rxe, visit)
        return EventType.MEDICATION_ORDERED, MedicationOrderPayload(order=order, encounter=visit)

    missing = r.fault(None, "RXE", "", "HL7-RXE-MISSING", "RDE^O11 carries no RXE segment")
    _map_orders(r, out, "RXE", ordered, missing)


def map_ras(r: Reader, out: Emitter) -> None:
    """Emit one medication.administered event per RXA of a RAS^O17."""

    def given(orc: Segment | None, rxa: Segment, visit: Encounter) -> tuple[EventType, Payload]:
        dose = _administration(r, orc, rxa, visit)
        return EventType.MEDICATION_ADMINISTERED, MedicationAdministrationPayload(
            administration=dose, encounter=visit
        )

    missing = r.fault(None, "RXA", "", "HL7-RXA-MISSING", "RAS^O17 carries no RXA segment")
    _map_orders(r, out, "RXA", given, missing)


__all__ = ["map_ras", "map_rde"]
