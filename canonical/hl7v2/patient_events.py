"""Patient-level ADT events, keyed by the patient rather than a visit: ADT^A40 merges
(docs/mappings/adt.md)."""

from __future__ import annotations

from canonical.envelope import EventType, MergePayload
from canonical.errors import InvalidMessageError
from canonical.hl7v2.emitter import Emitter
from canonical.hl7v2.parser import Segment
from canonical.hl7v2.patient_visit import patient, patient_key
from canonical.hl7v2.reader import Reader, groups
from canonical.models import PatientMerge


def _merge(r: Reader, pid: Segment, mrg: Segment) -> PatientMerge:
    prior = mrg.get(1, 1).strip()
    if not prior:
        raise InvalidMessageError(
            r.fault(mrg, "MRG", "MRG-1", "HL7-MRG-1-MISSING", "prior patient identifier is empty")
        )
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


__all__ = ["map_merge"]
