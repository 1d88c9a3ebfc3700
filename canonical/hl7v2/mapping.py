"""HL7 v2 to canonical: ADT, BAR, DFT, RDE and RAS messages become event envelopes.

Mapped: ADT^A01-A08, A11-A13 (encounter events), A14-A16 and A25-A27 (pending events: recorded, no
status of their own), A28 and A31 (person updates), A40 (merge), A44 and A45 (account and visit moves);
BAR^P01/P05/P06 (accounts and their DG1/PR1/DRG coding) and P12 (coding changes); DFT^P03 and P11 (FT1
charges, credits, reversals and supply items, and the coding they carry); RDE^O11 (verified medication
orders) and RAS^O17 (administrations, which consume stock). The IN1 segments of ADT^A01/A04-A08 and
BAR^P01/P05 become the visit's coverages (canonical.hl7v2.coverage). The field-by-field tables are in
docs/mappings/.

This module decides what a message is and hands it to its mapper: encounter ADT and BAR here, DFT in
canonical.hl7v2.charges, RDE and RAS in canonical.hl7v2.medications, patient-level ADT in
canonical.hl7v2.patient_events. They read through a canonical.hl7v2.reader.Reader and raise
:class:`~canonical.errors.InvalidMessageError` with a precise :class:`~canonical.errors.Fault` when a field
they need is missing or malformed. A message hcsync does not map maps to no events (it is routed) only
when canonical.hl7v2.unmapped finds nothing financial in it; otherwise it is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pydantic import ValidationError

from canonical.envelope import CodingPayload, EncounterPayload, EventEnvelope, EventType
from canonical.errors import InvalidMessageError
from canonical.hl7v2.charges import map_dft
from canonical.hl7v2.coding import coding_update
from canonical.hl7v2.coverage import coverages
from canonical.hl7v2.emitter import Emitter
from canonical.hl7v2.medications import map_ras, map_rde
from canonical.hl7v2.parser import Hl7Message, Segment, parse_message
from canonical.hl7v2.patient_events import (
    PERSON_EVENTS,
    map_account_moves,
    map_merge,
    map_person,
    map_visit_moves,
)
from canonical.hl7v2.patient_visit import encounter, encounter_id_of, occurred_at, patient
from canonical.hl7v2.reader import Reader, groups
from canonical.hl7v2.unmapped import unmapped_fault, unread_charge_fault
from canonical.models import CodingMode, Encounter, Patient

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
    "A14": EventType.ADMIT_PENDING,
    "A15": EventType.TRANSFER_PENDING,
    "A16": EventType.DISCHARGE_PENDING,
    "A25": EventType.PENDING_DISCHARGE_CANCELLED,
    "A26": EventType.PENDING_TRANSFER_CANCELLED,
    "A27": EventType.PENDING_ADMIT_CANCELLED,
}
BAR_EVENTS: dict[str, EventType] = {
    "P01": EventType.ACCOUNT_OPENED,
    "P05": EventType.ACCOUNT_UPDATED,
    "P06": EventType.ACCOUNT_ENDED,
}
# The triggers whose IN1 segments become the visit's coverages (EncounterPayload.coverages): registration,
# admission, pre-admission, class changes and updates, and the BAR account events that carry insurance.
# Other triggers' IN1 are not read (docs/mappings/adt.md, IN1: insurance).
COVERAGE_TRIGGERS = frozenset({"A01", "A04", "A05", "A06", "A07", "A08", "P01", "P05"})
# BAR^P12 (update diagnosis/procedure) has no account event: only the coding change of its visit.
CODING_ONLY = "P12"
SUPPORTED = frozenset(
    {("ADT", trigger) for trigger in (*ADT_EVENTS, *PERSON_EVENTS, "A40", "A44", "A45")}
    | {("BAR", trigger) for trigger in (*BAR_EVENTS, CODING_ONLY)}
    | {("DFT", "P03"), ("DFT", "P11"), ("RDE", "O11"), ("RAS", "O17")}
)


def _encounter_payload(
    r: Reader, trigger: str, who: Patient, visit: Encounter, segments: Sequence[Segment]
) -> EncounterPayload:
    """Return an encounter event's payload, with the coverages of ``segments`` for COVERAGE_TRIGGERS."""
    if trigger not in COVERAGE_TRIGGERS:
        return EncounterPayload(patient=who, encounter=visit)
    found = coverages(r, segments, visit.encounter_id, who)
    return EncounterPayload(
        patient=who, encounter=visit, coverages=found.coverages, coverage_warnings=found.warnings
    )


def _map_adt(r: Reader, out: Emitter, trigger: str) -> None:
    visit = encounter(r)
    payload = _encounter_payload(r, trigger, patient(r), visit, r.msg.segments)
    out.emit(0, visit.encounter_id, ADT_EVENTS[trigger], payload)


def _map_bar(r: Reader, out: Emitter, trigger: str) -> None:
    who = patient(r)
    visits = groups(r.msg, "PV1")
    if not visits:
        r.require_segment("PV1")
    # P01/P05/P06 send each visit's full coding; P12 sends changes, honouring DG1-21 and PR1-20.
    mode = CodingMode.MERGE if trigger == CODING_ONLY else CodingMode.REPLACE
    for k, group in enumerate(visits):
        visit = encounter(r, group[0])
        if trigger in BAR_EVENTS:
            payload = _encounter_payload(r, trigger, who, visit, group)
            out.emit(2 * k, visit.encounter_id, BAR_EVENTS[trigger], payload)
        coding = coding_update(r, group, visit.encounter_id, mode)
        if coding is not None:
            out.emit(
                2 * k + 1,
                visit.encounter_id,
                EventType.CODING_UPDATED,
                CodingPayload(coding=coding, encounter=visit),
            )


def canonicalize(data: bytes | Hl7Message, *, default_tz: dt.tzinfo = dt.UTC) -> list[EventEnvelope]:
    """Map one HL7 v2 message to canonical events; an empty list means no financial effect.

    Raises DecodeError when the bytes are not HL7 and InvalidMessageError when a required field is missing
    or malformed; both carry a Fault naming the message, segment, field and position.
    """
    msg = data if isinstance(data, Hl7Message) else parse_message(data)
    r = Reader(msg, default_tz)
    msh = r.require_segment("MSH")
    if not msg.control_id:
        raise InvalidMessageError(
            r.fault(msh, "MSH", "MSH-10", "HL7-MSH-10-MISSING", "message control id is empty")
        )
    message_type, trigger = financial_type(msg)
    if (message_type, trigger) not in SUPPORTED:
        fault = unmapped_fault(msg, message_type, trigger)
        if fault is not None:
            raise InvalidMessageError(fault)
        return []
    if message_type != "DFT":
        fault = unread_charge_fault(msg)
        if fault is not None:
            raise InvalidMessageError(fault)
    out = Emitter(r, occurred_at(r))
    try:
        if message_type == "ADT":
            if trigger in PERSON_EVENTS:
                map_person(r, out, trigger)
            elif trigger == "A40":
                map_merge(r, out)
            elif trigger == "A44":
                map_account_moves(r, out)
            elif trigger == "A45":
                map_visit_moves(r, out)
            else:
                _map_adt(r, out, trigger)
        elif message_type == "BAR":
            _map_bar(r, out, trigger)
        elif message_type == "DFT":
            map_dft(r, out)
        elif message_type == "RDE":
            map_rde(r, out)
        else:
            map_ras(r, out)
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


__all__ = ["COVERAGE_TRIGGERS", "SUPPORTED", "canonicalize", "encounter_id_of", "financial_type"]
