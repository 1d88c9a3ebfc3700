"""The balances of an 835 and an 837, checked on the set's segments before any model is built.

x12sdk's models check two of these (CLM02 = the lines' charges; CLP03 - CLP04 = the claim's CAS) but
refuse with a loop path and the amounts (``loop_2000.0.loop_2100.3: Unable to balance charge amount
...``), without the segment's position. Checked here on the segments envelope.py kept, a failing balance
names the segment, its position in the set, the element and the difference in cents, and the claim by
its ordinal (``claim 2``), never by CLM01/CLP01 (PHI). The rules (X12 835 X221A1 section 1.10.2):

- each claim: CLP03 - CLP04 = the sum of every CAS amount of the claim, claim- and line-level;
- each service line: SVC02 - SVC03 = the sum of the line's CAS amounts;
- the payment: BPR02 = the sum of CLP04 - the sum of the PLB amounts;
- each 837 claim: CLM02 = the sum of its lines' SV102 (837P) or SV203 (837I).

An amount that is not a decimal is not checked here: the model reading then refuses it, located.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from canonical.errors import Fault
from canonical.x12.envelope import Segment
from canonical.x12.locate import SetLocation

__all__ = ["BALANCE_RULE", "check_835", "check_837"]

BALANCE_RULE = "X12-BALANCE"
_CENTS_PER_DOLLAR = 100
_CAS_AMOUNTS = (3, 6, 9, 12, 15, 18)
_PLB_AMOUNTS = (4, 6, 8, 10, 12, 14)
# Segments that end an 835 service line's CAS run.
_AFTER_LINE = frozenset({"SVC", "CLP", "LX", "PLB", "SE"})


class _NotAmount(Exception):
    """An element that should be an amount is not one; the balance it belongs to is not checked."""


def _cents(segment: Segment, element: int) -> int:
    raw = segment.element(element).strip()
    if not raw:
        return 0
    try:
        return int(Decimal(raw) * _CENTS_PER_DOLLAR)
    except (InvalidOperation, ValueError, OverflowError):
        raise _NotAmount from None


def _sum(segments: list[Segment], elements: tuple[int, ...]) -> int:
    return sum(_cents(segment, element) for segment in segments for element in elements)


def check_837(where: SetLocation, line_segment: str, charge_element: int) -> list[Fault]:
    """CLM02 against the sum of each claim's ``line_segment`` (SV1 or SV2) charges."""
    faults: list[Fault] = []
    claims = [segment for segment in where.transaction.segments if segment.id == "CLM"]
    for index, clm in enumerate(claims):
        following = claims[index + 1] if index + 1 < len(claims) else None
        lines = where.between(line_segment, clm, following)
        try:
            difference = _cents(clm, 2) - _sum(lines, (charge_element,))
        except _NotAmount:
            continue
        if difference:
            reason = (
                f"claim {index + 1}: CLM02 differs from the sum of its {len(lines)} lines' "
                f"{line_segment}{charge_element:02d} by {difference} cents"
            )
            faults.append(where.fault(BALANCE_RULE, reason, clm, "CLM02"))
    return faults


def check_835(where: SetLocation) -> list[Fault]:
    """Every claim's and line's CAS balance, then BPR02 against CLP04 and PLB."""
    faults: list[Fault] = []
    segments = where.transaction.segments
    claims = [segment for segment in segments if segment.id == "CLP"]
    paid = 0
    paid_known = True
    for index, clp in enumerate(claims):
        following = claims[index + 1] if index + 1 < len(claims) else where.nth("PLB", 0)
        try:
            paid += _cents(clp, 4)
            difference = (
                _cents(clp, 3) - _cents(clp, 4) - _sum(where.between("CAS", clp, following), _CAS_AMOUNTS)
            )
        except _NotAmount:
            paid_known = False
            continue
        if difference:
            reason = (
                f"claim {index + 1}: CLP03 - CLP04 differs from the sum of its claim and line CAS "
                f"amounts by {difference} cents"
            )
            faults.append(where.fault(BALANCE_RULE, reason, clp, "CLP04"))
        faults += _lines(where, index + 1, where.between("SVC", clp, following), segments)
    bpr = where.nth("BPR", 0)
    if bpr is None or not paid_known:
        return faults
    try:
        difference = _cents(bpr, 2) - (paid - _sum(where.between("PLB", None, None), _PLB_AMOUNTS))
    except _NotAmount:
        return faults
    if difference:
        reason = f"BPR02 differs from the sum of CLP04 less the PLB adjustments by {difference} cents"
        faults.append(where.fault(BALANCE_RULE, reason, bpr, "BPR02"))
    return faults


def _lines(where: SetLocation, claim: int, lines: list[Segment], segments: list[Segment]) -> list[Fault]:
    faults: list[Fault] = []
    for number, svc in enumerate(lines, 1):
        start = where.position(svc) or 0  # the index of the segment after the SVC
        end = next((segments[i] for i in range(start, len(segments)) if segments[i].id in _AFTER_LINE), None)
        try:
            difference = _cents(svc, 2) - _cents(svc, 3) - _sum(where.between("CAS", svc, end), _CAS_AMOUNTS)
        except _NotAmount:
            continue
        if difference:
            reason = (
                f"claim {claim}, line {number}: SVC02 - SVC03 differs from the sum of the line's CAS "
                f"amounts by {difference} cents"
            )
            faults.append(where.fault(BALANCE_RULE, reason, svc, "SVC03"))
    return faults
