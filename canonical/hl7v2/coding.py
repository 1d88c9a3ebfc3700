"""The DG1 (diagnosis), PR1 (procedure) and DRG readers: an encounter's coding (docs/mappings/bar.md)."""

from __future__ import annotations

from canonical.errors import InvalidMessageError
from canonical.hl7v2.parser import Segment
from canonical.hl7v2.reader import Reader, bounded_int, optional_int
from canonical.models import CodingMode, CodingUpdate, Diagnosis, Drg, Procedure


def _sequence(r: Reader, seg: Segment, ordinal: int) -> int:
    raw = seg.get(1)
    if not raw.strip():
        return ordinal
    return r.convert(seg, f"{seg.name}-1", raw, bounded_int, f"HL7-{seg.name}-1-NUMBER")


def diagnosis(r: Reader, dg1: Segment, ordinal: int) -> Diagnosis:
    """Read one DG1; ``ordinal`` (from 1) is its set id when DG1-1 is empty."""
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
        priority=r.convert(dg1, "DG1-15", dg1.get(15), optional_int, "HL7-DG1-15-NUMBER"),
        diagnosed_at=r.dtm(dg1, 5),
        identifier=dg1.get(20, 1),
        action=r.action(dg1, 21, "HL7-DG1-21-CODE"),
    )


def procedure(r: Reader, pr1: Segment, ordinal: int) -> Procedure:
    """Read one PR1; ``ordinal`` (from 1) is its set id when PR1-1 is empty."""
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
        priority=r.convert(pr1, "PR1-14", pr1.get(14), optional_int, "HL7-PR1-14-NUMBER"),
        surgeon_id=pr1.get(11, 1),
        identifier=pr1.get(19, 1),
        action=r.action(pr1, 20, "HL7-PR1-20-CODE"),
    )


def drg(r: Reader, seg: Segment) -> Drg:
    """Read one DRG segment."""
    code = seg.get(1, 1).strip()
    if not code:
        raise InvalidMessageError(r.fault(seg, "DRG", "DRG-1", "HL7-DRG-1-MISSING", "DRG code is empty"))
    return Drg(code=code, description=seg.get(1, 2), code_system=seg.get(1, 3), assigned_at=r.dtm(seg, 2))


def coding_update(
    r: Reader, segments: list[Segment], encounter_id: str, mode: CodingMode = CodingMode.REPLACE
) -> CodingUpdate | None:
    """Return the coding the DG1, PR1 and first DRG among ``segments`` carry; None when there are none.

    Set ids default to each DG1's and PR1's ordinal among ``segments`` (from 1).
    """
    dg1s = [s for s in segments if s.name == "DG1"]
    pr1s = [s for s in segments if s.name == "PR1"]
    drgs = [s for s in segments if s.name == "DRG"]
    if not (dg1s or pr1s or drgs):
        return None
    return CodingUpdate(
        encounter_id=encounter_id,
        diagnoses=tuple(diagnosis(r, s, n) for n, s in enumerate(dg1s, start=1)),
        procedures=tuple(procedure(r, s, n) for n, s in enumerate(pr1s, start=1)),
        drg=drg(r, drgs[0]) if drgs else None,
        mode=mode,
    )


__all__ = ["coding_update", "diagnosis", "drg", "procedure"]
