"""IN1 (insurance) to canonical: a visit's coverages, in coordination-of-benefits order.

ADT^A01/A04/A05/A06/A07/A08 read every IN1 of the message, BAR^P01/P05 those of each visit group; the
field table is docs/mappings/adt.md (IN1: insurance). Two kinds of bad IN1 are told apart:

- content that is wrong (a date that is no date, an expiry before the start, a priority that is no
  number or repeats, a coverage without its payer) refuses the whole message with a located fault: kept,
  it would check eligibility with or bill the wrong payer, and dropped, it would bill the next payer (or
  the patient) first. The message goes to quarantine with its original bytes, for a fix and a replay;
- a valid IN1 beyond the tertiary coverage (IN1-22 above 3, or a fourth IN1) is left out with a
  :class:`~canonical.envelope.CoverageWarning` on the event: HL7 does not bound the IN1 count, but an
  837 bills at most three payers and ``Coverage.priority`` holds 1 to 3.

Member ids, names and birth dates are PHI: no fault reason or ``found`` value here ever carries them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from canonical.envelope import CoverageWarning
from canonical.errors import InvalidMessageError
from canonical.hl7v2.datatypes import parse_dt
from canonical.hl7v2.parser import Segment
from canonical.hl7v2.reader import Reader, bounded_int
from canonical.models import Patient
from canonical.revenue_cycle import Coverage, SubscriberRelationship

# Primary, secondary, tertiary: the priorities a Coverage holds and an 837 bills (SBR01 P, S, T).
MAX_COVERAGES = 3
# HL7's explicit null ("delete this value"): for a coverage it says the same as an empty field.
HL7_NULL = '""'
# HL7 table 0063 (relationship, user-defined) codes hcsync names; any other code is "other". The 5010
# 837 and 271 know self (18), spouse (01) and child (19) and put step and foster children under child.
RELATIONSHIPS: dict[str, SubscriberRelationship] = {
    "SEL": SubscriberRelationship.SELF,
    "SPO": SubscriberRelationship.SPOUSE,
    "CHD": SubscriberRelationship.CHILD,
    "NCH": SubscriberRelationship.CHILD,  # natural child
    "SCH": SubscriberRelationship.CHILD,  # stepchild
    "FCH": SubscriberRelationship.CHILD,  # foster child
}
# Table 0063 is user-defined: some sites send their own code with the relationship's name as the text
# (IN1-17.2, e.g. "4^SELF"); that name is used when the code is not one of the above.
RELATIONSHIP_NAMES: dict[str, SubscriberRelationship] = {
    "SELF": SubscriberRelationship.SELF,
    "SPOUSE": SubscriberRelationship.SPOUSE,
    "CHILD": SubscriberRelationship.CHILD,
}
# The IN1 fields mapped to a Coverage, besides the set id: an IN1 with none of them and no IN1-3 is an
# empty placeholder (``IN1|1``), not a coverage.
_CONTENT_FIELDS = (2, 4, 8, 12, 13, 16, 17, 18, 22, 36, 49)


@dataclass(frozen=True, slots=True)
class Coverages:
    """What a visit's IN1 segments gave: the coverages kept, by priority, and the IN1s left out."""

    coverages: tuple[Coverage, ...] = ()
    warnings: tuple[CoverageWarning, ...] = ()


@dataclass(frozen=True, slots=True)
class _Read:
    """One IN1 read and checked, before its priority is settled."""

    segment: Segment
    order: tuple[int, int]  # (set id, else ordinal; ordinal): the order IN1-22 falls back to
    explicit_priority: int | None
    coverage: Coverage  # with priority 1 until _settle gives it its own

    @property
    def payer_id(self) -> str:
        return self.coverage.payer_id


def _value(seg: Segment, field: int, component: int = 1) -> str:
    """Return a field's component, stripped, with HL7's explicit null read as empty."""
    value = seg.get(field, component).strip()
    return "" if value == HL7_NULL else value


def _has_content(seg: Segment) -> bool:
    """Return whether an IN1 carries anything besides its set id (a component, not just separators)."""
    if _value(seg, 3):
        return True
    return any(_value(seg, field, component) for field in _CONTENT_FIELDS for component in (1, 2))


def _date(r: Reader, in1: Segment, field: int, rule: str, *, phi: bool) -> dt.date | None:
    """Read a DT field; a bad one refuses the message without echoing a PHI value (IN1-18)."""
    raw = _value(in1, field)
    try:
        return parse_dt(raw)
    except ValueError:
        reason = "not an HL7 date (YYYY[MM[DD]], years 1800-2200)"
        raise InvalidMessageError(
            r.fault(in1, "IN1", f"IN1-{field}", rule, reason, "" if phi else raw)
        ) from None


def relationship(in1: Segment, patient: Patient) -> SubscriberRelationship:
    """Return the patient's relationship to the insured (IN1-17), see RELATIONSHIPS.

    When IN1-17 is empty the insured is taken to be the patient if IN1-16 is empty or names the patient
    (PID-5.1 and 5.2), and someone else ("other") when it names another person.
    """
    code = _value(in1, 17).upper()
    if code:
        known = RELATIONSHIPS.get(code) or RELATIONSHIP_NAMES.get(_value(in1, 17, 2).upper())
        return known or SubscriberRelationship.OTHER
    family, given = _value(in1, 16, 1), _value(in1, 16, 2)
    if not (family or given):
        return SubscriberRelationship.SELF
    same = (family.casefold(), given.casefold()) == (
        patient.family_name.casefold(),
        patient.given_name.casefold(),
    )
    return SubscriberRelationship.SELF if same else SubscriberRelationship.OTHER


def _read(r: Reader, in1: Segment, ordinal: int, encounter_id: str, patient: Patient) -> _Read:
    """Read and check one IN1 that has content; every fault refuses the message."""
    payer_id = _value(in1, 3)
    if not payer_id:
        raise InvalidMessageError(
            r.fault(
                in1,
                "IN1",
                "IN1-3",
                "HL7-IN1-3-MISSING",
                "insurance company id is empty in an IN1 with content",
            )
        )
    raw_set_id = _value(in1, 1)
    set_id = r.convert(in1, "IN1-1", raw_set_id, bounded_int, "HL7-IN1-1-NUMBER") if raw_set_id else ordinal
    explicit = _priority(r, in1)
    effective = _date(r, in1, 12, "HL7-IN1-12-DATE", phi=False)
    expires = _date(r, in1, 13, "HL7-IN1-13-DATE", phi=False)
    if effective is not None and expires is not None and expires < effective:
        raise InvalidMessageError(
            r.fault(
                in1,
                "IN1",
                "IN1-13",
                "HL7-IN1-13-ORDER",
                f"plan expiration date {expires} is before its effective date {effective} (IN1-12)",
            )
        )
    birth = _date(r, in1, 18, "HL7-IN1-18-DATE", phi=True)
    related = relationship(in1, patient)
    family, given = _value(in1, 16, 1), _value(in1, 16, 2)
    if related is SubscriberRelationship.SELF:
        if not (family or given):
            family, given = patient.family_name, patient.given_name
        birth = birth if birth is not None else patient.birth_date
    coverage = Coverage(
        encounter_id=encounter_id,
        payer_id=payer_id,
        plan=_value(in1, 2),
        member_id=_value(in1, 36) or _value(in1, 49),
        subscriber_family_name=family,
        subscriber_given_name=given,
        subscriber_birth_date=birth,
        group_number=_value(in1, 8),
        relationship=related,
        effective_on=effective,
        expires_on=expires,
    )
    return _Read(segment=in1, order=(set_id, ordinal), explicit_priority=explicit, coverage=coverage)


def _priority(r: Reader, in1: Segment) -> int | None:
    """Return IN1-22 (coordination of benefits priority, 1 = primary), None when it is empty."""
    raw = _value(in1, 22)
    if not raw:
        return None
    number = r.convert(in1, "IN1-22", raw, bounded_int, "HL7-IN1-22-NUMBER")
    if number < 1:
        raise InvalidMessageError(
            r.fault(in1, "IN1", "IN1-22", "HL7-IN1-22-NUMBER", "priority must be 1 or more", raw)
        )
    return number


def _warning(r: Reader, read: _Read, field: str, rule: str, reason: str) -> CoverageWarning:
    fault = r.fault(read.segment, "IN1", field, rule, reason)
    return CoverageWarning(
        rule=rule, reason=fault.describe(), field=field, position=read.segment.index, payer_id=read.payer_id
    )


def _settle(r: Reader, reads: list[_Read]) -> tuple[list[tuple[int, _Read]], list[CoverageWarning]]:
    """Give every IN1 its priority: IN1-22 where sent, else the lowest free one in set id order."""
    kept: list[tuple[int, _Read]] = []
    warnings: list[CoverageWarning] = []
    taken: dict[int, _Read] = {}
    for read in reads:
        number = read.explicit_priority
        if number is None:
            continue
        if number in taken:
            raise InvalidMessageError(
                r.fault(
                    read.segment,
                    "IN1",
                    "IN1-22",
                    "HL7-IN1-22-DUPLICATE",
                    f"priority {number} is also IN1-22 of the IN1 at position {taken[number].segment.index}",
                    str(number),
                )
            )
        taken[number] = read
        if number > MAX_COVERAGES:
            reason = f"priority {number} is beyond the tertiary coverage; hcsync bills {MAX_COVERAGES} payers"
            warnings.append(_warning(r, read, "IN1-22", "HL7-IN1-22-RANGE", reason))
        else:
            kept.append((number, read))
    free = (n for n in range(1, MAX_COVERAGES + 1) if n not in taken)
    for read in sorted((x for x in reads if x.explicit_priority is None), key=lambda x: x.order):
        number = next(free, None)
        if number is None:
            reason = f"more than {MAX_COVERAGES} coverages; hcsync bills primary, secondary and tertiary"
            warnings.append(_warning(r, read, "IN1-1", "HL7-IN1-EXTRA", reason))
        else:
            kept.append((number, read))
    kept.sort(key=lambda pair: pair[0])
    return kept, warnings


def coverages(r: Reader, segments: Sequence[Segment], encounter_id: str, patient: Patient) -> Coverages:
    """Return the coverages the IN1 segments among ``segments`` give a visit, primary first.

    An IN1 with nothing but a set id is a placeholder and gives nothing. Raises InvalidMessageError for
    the content faults the module docstring lists; IN1s beyond the tertiary are returned as warnings.
    """
    in1s = [seg for seg in segments if seg.name == "IN1" and _has_content(seg)]
    if not in1s:
        return Coverages()
    reads = [_read(r, in1, ordinal, encounter_id, patient) for ordinal, in1 in enumerate(in1s, start=1)]
    kept, warnings = _settle(r, reads)
    return Coverages(
        # model_copy does not validate again: the priority is 1 to MAX_COVERAGES by construction.
        coverages=tuple(read.coverage.model_copy(update={"priority": number}) for number, read in kept),
        warnings=tuple(warnings),
    )


__all__ = ["MAX_COVERAGES", "RELATIONSHIPS", "Coverages", "coverages", "relationship"]
