"""The PID (patient), PV1 (visit) and event-time readers every HL7 v2 mapper shares.

docs/mappings/adt.md holds their field tables: how PID becomes a Patient, how PV1 becomes an Encounter
and its id, and where an event's time comes from (EVN-2, else MSH-7).
"""

from __future__ import annotations

import datetime as dt

from canonical.errors import InvalidMessageError
from canonical.hl7v2.datatypes import parse_dt
from canonical.hl7v2.parser import Hl7Message, Segment
from canonical.hl7v2.reader import Reader
from canonical.models import Address, Encounter, Patient, PatientClass


def patient(r: Reader, pid: Segment | None = None) -> Patient:
    """Read a PID (the message's first when none is given) into a Patient."""
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


def patient_key(patient: Patient) -> str:
    """Return the key of a patient-level event: 'patient:' PID-3.4 ':' PID-3.1."""
    return f"patient:{patient.assigning_authority}:{patient.mrn}"


def encounter_id(msg: Hl7Message, pv1: Segment) -> str | None:
    """Return the encounter id of one PV1 (PV1-19.4, else MSH-4, else PV1-3.4 ':' PV1-19.1), None if none."""
    visit = pv1.get(19).strip()
    if not visit:
        return None
    authority = pv1.get(19, 4) or msg.sending_facility or pv1.get(3, 4)
    return f"{authority}:{visit}"


def encounter_id_of(msg: Hl7Message) -> str | None:
    """Return the encounter id of a message (PV1-19.4 or MSH-4 or PV1-3.4 ':' PV1-19.1), None if unknown."""
    pv1 = msg.segment("PV1")
    return encounter_id(msg, pv1) if pv1 is not None else None


def encounter(r: Reader, pv1: Segment | None = None) -> Encounter:
    """Read a PV1 (the message's first when none is given) into an Encounter."""
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
    the_id = encounter_id(r.msg, pv1)
    assert the_id is not None  # PV1-19 was checked above
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
        encounter_id=the_id,
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


def occurred_at(r: Reader) -> dt.datetime:
    """Return when the message's event happened: EVN-2, else MSH-7."""
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


__all__ = ["encounter", "encounter_id", "encounter_id_of", "occurred_at", "patient", "patient_key"]
