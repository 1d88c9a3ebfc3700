"""DFT^P03 and DFT^P11 to canonical: each FT1 becomes a charge, credit or reversal line, and the message's
DG1, PR1 and DRG one coding change (docs/mappings/dft.md)."""

from __future__ import annotations

from pydantic import ValidationError

from canonical.envelope import ChargePayload, CodingPayload, EventType
from canonical.errors import InvalidMessageError
from canonical.hl7v2.coding import coding_update
from canonical.hl7v2.datatypes import MAX_CENTS, parse_cents
from canonical.hl7v2.emitter import Emitter
from canonical.hl7v2.parser import Segment
from canonical.hl7v2.patient_visit import encounter, patient
from canonical.hl7v2.reader import Reader, whole_number
from canonical.models import Charge, CodingMode, Encounter, TransactionType

# FT1-7.3 coding systems that name stock items rather than services: such a line also consumes stock.
# Drugs (NDC-coded lines) are not here: the medication administration record (RAS) consumes them, and
# counting the pharmacy charge too would consume the same dose twice.
SUPPLY_CODE_SYSTEMS = frozenset({"SUPPLY", "SUP", "ITEM", "IM"})


def charge(r: Reader, ft1: Segment, event_id: str, encounter: Encounter) -> Charge:
    """Read one FT1 into a Charge whose id is ``event_id``; the amount is signed by the reversal rules."""
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
    quantity = r.convert(ft1, "FT1-10", quantity_raw, whole_number, "HL7-FT1-10-NUMBER")
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


def map_dft(r: Reader, out: Emitter) -> None:
    """Emit one charge event per FT1, at the FT1's ordinal, then one coding change after them.

    DFT^P03 and P11 differ in where they carry coding: P03 has PR1 in each FINANCIAL group and DG1/DRG
    after the last; P11 has DG1/DRG before the FINANCIAL groups and PR1, DG1 and DRG inside each (the
    coding of that transaction). Every DG1 and PR1 of the message, in message order, and its first DRG
    are merged into the encounter's coding: a DFT codes what it charges, never the whole stay.
    """
    visit = encounter(r)
    who = patient(r)
    ft1s = r.msg.segments_named("FT1")
    if not ft1s:
        raise InvalidMessageError(
            r.fault(None, "FT1", "", "HL7-FT1-MISSING", f"{r.msg.event_code} carries no FT1 segment")
        )
    # The FT1 ordinal, not the segment index: an extra segment elsewhere in a resent message must not
    # change the ids of its charges.
    for position, ft1 in enumerate(ft1s):
        line = charge(r, ft1, out.event_id(position), visit)
        credit = line.is_reversal or line.transaction_type is TransactionType.CREDIT
        event_type = EventType.CHARGE_CREDITED if credit else EventType.CHARGE_POSTED
        out.emit(
            position,
            visit.encounter_id,
            event_type,
            ChargePayload(charge=line, encounter=visit, patient=who),
        )
    coding = coding_update(r, list(r.msg.segments), visit.encounter_id, CodingMode.MERGE)
    if coding is not None:
        out.emit(
            len(ft1s),
            visit.encounter_id,
            EventType.CODING_UPDATED,
            CodingPayload(coding=coding, encounter=visit),
        )


__all__ = ["SUPPLY_CODE_SYSTEMS", "charge", "map_dft"]
