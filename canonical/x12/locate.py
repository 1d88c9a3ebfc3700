"""Where in a transaction set a reading error is: the set's control numbers, the segment and its element.

x12sdk's models keep no segment positions, and the canonical models' own checks know nothing of X12; but
the envelope reader (envelope.py) kept every segment of the set with its position. So a mapping error is
located by finding its segment there: the n-th segment with an id (the k-th CLP is the k-th claim of an
835, in file order), or the segment whose element holds the value a library refused.

Reasons never carry PHI: a claim is named by its ordinal in the set (``claim 2``), never by CLM01 or
CLP01, and text that comes from a library (x12sdk's validator messages quote values) is passed through
:meth:`SetLocation.redact`, which blanks every element value of the set that appears in it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from canonical.errors import Fault
from canonical.x12.envelope import Interchange, Segment, Transaction

__all__ = ["At", "ReadRefused", "SetLocation", "resolve"]

# Element values shorter than this are not blanked from library messages: single digits and two-letter
# codes (counts, qualifiers) are not PHI, and blanking them would make every message unreadable.
_REDACT_MIN_CHARS = 3
_REDACTED = "…"


# Where a fault is: a segment, none (the set), or how to find it. Finding a segment by value scans the
# set, so mappers pass a callable and it runs only when there is a fault to locate.
At = Segment | None | Callable[[], Segment | None]


def resolve(at: At) -> Segment | None:
    """The segment ``at`` names (calling it when it is a finder)."""
    return at() if callable(at) else at


class ReadRefused(Exception):
    """Raised inside a mapper: the set cannot become canonical models, for the reason the fault gives."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.describe())
        self.fault = fault


@dataclass(slots=True)
class SetLocation:
    """One transaction set's control numbers and segments, to locate errors by segment position."""

    source: str
    isa13: str
    gs06: str
    transaction: Transaction
    component: str
    _by_id: dict[str, list[Segment]] = field(default_factory=dict)
    _positions: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, interchange: Interchange, gs06: str, transaction: Transaction, source: str) -> SetLocation:
        """Index ``transaction`` of ``interchange`` (group ``gs06``) by segment id."""
        by_id: dict[str, list[Segment]] = defaultdict(list)
        for segment in transaction.segments:
            by_id[segment.id].append(segment)
        positions = {key: [segment.position for segment in found] for key, found in by_id.items()}
        return cls(
            source,
            interchange.control,
            gs06,
            transaction,
            interchange.delimiters.component,
            dict(by_id),
            positions,
        )

    @property
    def st02(self) -> str:
        """ST02 of the set."""
        return self.transaction.control

    @property
    def message_id(self) -> str:
        """The set as a fault names it: file, ISA13, GS06 and ST02 (as envelope.py names them)."""
        parts = [self.source] if self.source else []
        parts += [f"ISA13 {self.isa13}", f"GS06 {self.gs06}", f"ST02 {self.st02}"]
        return ", ".join(parts)

    def nth(self, segment_id: str, index: int) -> Segment | None:
        """Return the ``index``-th (0-based) segment with ``segment_id`` in the set, in file order."""
        found = self._by_id.get(segment_id, [])
        return found[index] if 0 <= index < len(found) else None

    def count(self, segment_id: str) -> int:
        """How many segments with ``segment_id`` the set holds."""
        return len(self._by_id.get(segment_id, []))

    def following(
        self, segment_id: str, after: Segment | None, qualifier: str = "", before: Segment | None = None
    ) -> Segment | None:
        """Return the first ``segment_id`` after ``after`` (and before ``before``), with element 1 =
        ``qualifier`` when one is given: a claim's DTP*434 is the first after its CLM."""
        found = self._by_id.get(segment_id, [])
        positions = self._positions.get(segment_id, [])
        first = bisect_right(positions, after.position) if after is not None else 0
        for index in range(first, len(found)):
            segment = found[index]
            if before is not None and segment.position >= before.position:
                return None
            if not qualifier or segment.element(1) == qualifier:
                return segment
        return None

    def between(self, segment_id: str, after: Segment | None, before: Segment | None) -> list[Segment]:
        """Every ``segment_id`` after ``after`` and before ``before`` (None: to the end of the set)."""
        found = self._by_id.get(segment_id, [])
        positions = self._positions.get(segment_id, [])
        first = bisect_right(positions, after.position) if after is not None else 0
        last = bisect_left(positions, before.position) if before is not None else len(found)
        return found[first:last]

    def holding(self, segment_id: str, element: int, value: str) -> Segment | None:
        """Return the first ``segment_id`` whose element ``element`` (or a component of it) is ``value``."""
        candidates = self._by_id.get(segment_id, [])
        for segment in candidates:
            text = segment.element(element)
            if text == value or value in text.split(self.component):
                return segment
        return candidates[0] if len(candidates) == 1 else None

    def position(self, segment: Segment | None) -> int | None:
        """``segment``'s position in the set, ST being 1 (a 999's IK302), or None."""
        return self.transaction.position_of(segment) if segment is not None else None

    def fault(self, rule: str, reason: str, at: At, element: str = "") -> Fault:
        """A fault at ``at`` (None: the set as a whole) and ``element`` (``CLP04``, ``CLM05-3``)."""
        segment = resolve(at)
        return Fault(
            rule=rule,
            reason=reason,
            message_id=self.message_id,
            segment=segment.id if segment is not None else "",
            field=element,
            position=self.position(segment),
        )

    def refuse(self, rule: str, reason: str, at: At, element: str = "") -> ReadRefused:
        """The exception a mapper raises for a fault at ``at`` and ``element``."""
        return ReadRefused(self.fault(rule, reason, at, element))

    def redact(self, text: str) -> str:
        """Blank every element or component value of the set (3 characters or more) found in ``text``."""
        values: set[str] = set()
        for segment in self.transaction.segments:
            for element in segment.elements:
                values.add(element)
                values.update(element.split(self.component))
        for value in sorted(values, key=len, reverse=True):
            if len(value) >= _REDACT_MIN_CHARS and value in text:
                text = text.replace(value, _REDACTED)
        return text
