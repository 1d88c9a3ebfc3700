"""Patient-level ADT events, keyed by the patient rather than a visit (docs/mappings/adt.md): person
updates (A28, A31), merges (A40), account moves (A44) and visit moves (A45)."""

from __future__ import annotations

from canonical.envelope import AccountMovePayload, EventType, MergePayload, PatientPayload
from canonical.errors import InvalidMessageError
from canonical.hl7v2.emitter import Emitter
from canonical.hl7v2.parser import Segment
from canonical.hl7v2.patient_visit import encounter_id, patient, patient_key
from canonical.hl7v2.reader import Reader, groups
from canonical.models import AccountMove, MoveScope, Patient, PatientMerge

PERSON_EVENTS: dict[str, EventType] = {"A28": EventType.PATIENT_ADDED, "A31": EventType.PATIENT_UPDATED}


def _prior(r: Reader, mrg: Segment) -> str:
    prior = mrg.get(1, 1).strip()
    if not prior:
        raise InvalidMessageError(
            r.fault(mrg, "MRG", "MRG-1", "HL7-MRG-1-MISSING", "prior patient identifier is empty")
        )
    return prior


def _merge(r: Reader, pid: Segment, mrg: Segment) -> PatientMerge:
    prior = _prior(r, mrg)
    return PatientMerge(
        surviving=patient(r, pid),
        prior_mrn=prior,
        prior_assigning_authority=mrg.get(1, 4),
        prior_account_number=mrg.get(3, 1),
        prior_visit_number=mrg.get(5, 1),
    )


def map_merge(r: Reader, out: Emitter) -> None:
    """Emit one patient.merged event per PID group of an ADT^A40."""
    # ADT^A40 may repeat its PATIENT group (PID, PD1, MRG, PV1): each PID merges the MRG that follows it.
    pairs = [(group[0], next((s for s in group if s.name == "MRG"), None)) for group in groups(r.msg, "PID")]
    if not pairs:
        r.require_segment("PID")
    for position, (pid, mrg) in enumerate(pairs):
        if mrg is None:
            raise InvalidMessageError(
                r.fault(pid, "MRG", "", "HL7-MRG-MISSING", "ADT^A40 patient group has no MRG segment")
            )
        merge = _merge(r, pid, mrg)
        out.emit(position, patient_key(merge.surviving), EventType.PATIENT_MERGED, MergePayload(merge=merge))


def map_person(r: Reader, out: Emitter, trigger: str) -> None:
    """Emit the patient.added (A28) or patient.updated (A31) event of the message's PID."""
    who = patient(r)
    out.emit(0, patient_key(who), PERSON_EVENTS[trigger], PatientPayload(patient=who))


def _account_move(r: Reader, target: Patient, mrg: Segment) -> AccountMove:
    prior = _prior(r, mrg)
    account = mrg.get(3, 1).strip()
    if not account:
        raise InvalidMessageError(
            r.fault(
                mrg,
                "MRG",
                "MRG-3",
                "HL7-MRG-3-MISSING",
                "prior patient account number is empty: ADT^A44 moves an account",
            )
        )
    return AccountMove(
        scope=MoveScope.ACCOUNT,
        target=target,
        prior_mrn=prior,
        prior_assigning_authority=mrg.get(1, 4),
        prior_account_number=account,
        prior_visit_number=mrg.get(5, 1),
    )


def _visit_move(r: Reader, target: Patient, mrg: Segment, pv1: Segment | None) -> AccountMove:
    prior = _prior(r, mrg)
    visit = mrg.get(5, 1).strip()
    if visit:
        authority = (
            mrg.get(5, 4)
            or (pv1.get(19, 4) if pv1 is not None else "")
            or r.msg.sending_facility
            or (pv1.get(3, 4) if pv1 is not None else "")
        )
        moved = f"{authority}:{visit}"
    else:
        found = encounter_id(r.msg, pv1) if pv1 is not None else None
        if found is None:
            raise InvalidMessageError(
                r.fault(
                    mrg,
                    "MRG",
                    "MRG-5",
                    "HL7-MRG-5-MISSING",
                    "neither MRG-5 nor the group's PV1-19 names the visit: ADT^A45 moves a visit",
                )
            )
        moved, visit = found, found.rpartition(":")[2]
    return AccountMove(
        scope=MoveScope.VISIT,
        target=target,
        prior_mrn=prior,
        prior_assigning_authority=mrg.get(1, 4),
        prior_account_number=mrg.get(3, 1),
        prior_visit_number=visit,
        encounter_id=moved,
    )


def map_account_moves(r: Reader, out: Emitter) -> None:
    """Emit one patient.account_moved event per PID group (PID, PD1, MRG) of an ADT^A44."""
    pairs = [(group[0], next((s for s in group if s.name == "MRG"), None)) for group in groups(r.msg, "PID")]
    if not pairs:
        r.require_segment("PID")
    for position, (pid, mrg) in enumerate(pairs):
        if mrg is None:
            raise InvalidMessageError(
                r.fault(pid, "MRG", "", "HL7-MRG-MISSING", "ADT^A44 patient group has no MRG segment")
            )
        move = _account_move(r, patient(r, pid), mrg)
        out.emit(position, patient_key(move.target), EventType.ACCOUNT_MOVED, AccountMovePayload(move=move))


def map_visit_moves(r: Reader, out: Emitter) -> None:
    """Emit one patient.visit_moved event per MERGE_INFO group (MRG, PV1) of an ADT^A45."""
    target = patient(r)
    merges = groups(r.msg, "MRG")
    if not merges:
        r.require_segment("MRG")
    for position, group in enumerate(merges):
        pv1 = next((s for s in group if s.name == "PV1"), None)
        move = _visit_move(r, target, group[0], pv1)
        out.emit(position, patient_key(target), EventType.VISIT_MOVED, AccountMovePayload(move=move))


__all__ = ["PERSON_EVENTS", "map_account_moves", "map_merge", "map_person", "map_visit_moves"]
