"""The 999 and TA1 hcsync answers an interchange with, and reading the ones payers send back.

Why written here from validate.py's results rather than by pyx12's ``error_999_visitor``: the stock writer
never answers an 835 (it needs ST03, "Not Used" in the 835 guide), crashes on an ST03 code error, stamps
control numbers from the clock and ``random``, writes the TA1 inside the 999 interchange after GE and only
when ISA14 = 1, addresses one 999 to the last sender of a file, and writes the superseded 005010X231
(docs/x12-research.md, section 1). The results already hold every located issue with its code, including
the envelope faults and the groups pyx12 has no map for, so the segments are written from them; the tests
validate what is written with pyx12's own 999 X231A1 map.

What is answered (X12 999 X231A1 and TA1 guides):

- **TA1**, as an interchange of its own, when ISA14 = 1 or the interchange envelope is broken; never for
  an interchange that only carries TA1s.
- **One 999 per interchange**, one ST*999 per 005010 functional group, one AK2 per set, IK3/IK4 locating
  each segment and element in error, IK5 and AK9. Groups of acknowledgments (GS01 FA: 999, 997) are not
  answered, nor 004010 groups (a 999 is 005010; hcsync does not handle 004010). A group pyx12 has no map
  for is acknowledged on its envelope: IK5 A unless the envelope reader found a fault. IK404 (a copy of
  the bad data) is never written: it would echo PHI.
- Both are addressed back to the interchange's sender (its ISA05/ISA06 become the receiver) from
  ``sender`` (hcsync's own qualifier and id). Control numbers and dates are parameters: the same input
  gives the same bytes.

:func:`read_acknowledgment` reads an inbound 999, 997 or TA1 into the verdicts hcsync updates the status
of the claims it sent with.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from canonical.errors import ConfigurationError, DecodeError, Fault
from canonical.x12.envelope import Interchange, Segment
from canonical.x12.validate import (
    ELEMENT_CODES,
    SEGMENT_CODES,
    TA1_CODES,
    GroupValidation,
    GroupVerdict,
    InterchangeValidation,
    IssueLevel,
    SetValidation,
    SetVerdict,
    X12Issue,
)

__all__ = [
    "ACK_GUIDE",
    "AcknowledgmentReport",
    "Acknowledgments",
    "GroupAcknowledgment",
    "InterchangeAcknowledgment",
    "SetAcknowledgment",
    "acknowledgments",
    "read_acknowledgment",
]

ACK_GUIDE = "005010X231A1"
_ELEMENT, _COMPONENT, _REPETITION, _TERMINATOR = "*", ":", "^", "~"
_LINE_END = "\n"  # after each terminator: readable, and every X12 reader skips it
_DELIMITERS = frozenset(_ELEMENT + _COMPONENT + _REPETITION + _TERMINATOR)
_ISA_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)
_MAX_CONTROL = 999_999_999  # ISA13 and GS06 are at most nine digits
_MAX_IK4_PER_IK3 = 99  # the 2110 loop repeats at most 99 times in X231A1
_MAX_CODES = 5  # IK502..IK506, AK905..AK909
_FUNCTIONAL_ACK = "FA"
_REPETITION_FROM = "00402"
_SUPPORTED_ISA12 = ("00401", "00501")
_NO_CONTROL = "0" * 9
_SEGMENT_ID = re.compile(r"[A-Z0-9]{2,3}")


@dataclass(frozen=True, slots=True)
class Acknowledgments:
    """What answers one interchange: a TA1 interchange and a 999 interchange, each when due."""

    ta1: str | None
    ack999: str | None
    next_control: int  # the first control number these did not use

    def interchanges(self) -> list[str]:
        """The interchanges to send, TA1 first."""
        return [text for text in (self.ta1, self.ack999) if text is not None]


def _clean(value: str) -> str:
    """A value safe to write between hcsync's delimiters (inbound data may carry them)."""
    return "".join("?" if char in _DELIMITERS else char for char in value.strip())


def _segment(*elements: str | tuple[str, ...]) -> str:
    """One segment in hcsync's delimiters; a tuple is a composite element (its components)."""
    values = [
        _COMPONENT.join(_clean(c) for c in e).rstrip(_COMPONENT) if isinstance(e, tuple) else _clean(e)
        for e in elements
    ]
    while len(values) > 1 and values[-1] == "":
        values.pop()
    return _ELEMENT.join(values) + _TERMINATOR


def _isa(
    sender: tuple[str, str],
    receiver: tuple[str, str],
    control: int,
    at: dt.datetime,
    version: str,
    usage: str,
) -> str:
    repetition = _REPETITION if version >= _REPETITION_FROM else "U"
    values = [
        "00",
        "",
        "00",
        "",
        sender[0],
        sender[1],
        receiver[0],
        receiver[1],
        at.strftime("%y%m%d"),
        at.strftime("%H%M"),
        repetition,
        version,
        f"{control:09d}",
        "0",
        usage or "P",
    ]
    padded = [_clean(v)[:w].ljust(w) for v, w in zip(values, _ISA_WIDTHS, strict=False)]
    padded[10] = repetition  # ISA11 is itself a delimiter
    return _ELEMENT.join(["ISA", *padded, _COMPONENT]) + _TERMINATOR


def _check_sender(sender: tuple[str, str], control_number: int) -> None:
    qualifier, identifier = sender
    if not qualifier or len(qualifier) > 2 or not identifier or len(identifier) > 15:
        raise ConfigurationError(
            "the acknowledgments' sender must be an ISA qualifier (1-2 characters) and id (1-15 characters)"
        )
    if not 0 < control_number <= _MAX_CONTROL - 1:
        raise ConfigurationError(f"an acknowledgment control number must be between 1 and {_MAX_CONTROL - 1}")


def _version(x: Interchange) -> str:
    return x.version if x.version in _SUPPORTED_ISA12 else "00501"


def _ta1(v: InterchangeValidation, sender: tuple[str, str], control: int, at: dt.datetime) -> str:
    x = v.interchange
    receiver = (x.isa.element(5), x.isa.element(6))
    verdict = (v.ta1_verdict, v.ta1_code)
    lines = [
        _isa(sender, receiver, control, at, _version(x), x.isa.element(15)),
        # TA101 echoes ISA13; an empty one (itself a fault, TA105 018) is answered as nine zeros.
        _segment("TA1", x.control.strip() or _NO_CONTROL, x.isa.element(9), x.isa.element(10), *verdict),
        _segment("IEA", "0", f"{control:09d}"),
    ]
    return _LINE_END.join(lines) + _LINE_END


def _answers_ta1_only(x: Interchange) -> bool:
    return not x.groups and any(s.id == "TA1" for s in x.loose)


def _acknowledged(v: InterchangeValidation) -> list[GroupValidation]:
    """The groups a 999 answers: 005010 groups that are not themselves acknowledgments.

    A group without GS01 or GS06 cannot be named in an AK1: validate() reports it at the interchange
    level (TA105 024), so the TA1 answers it.
    """
    return [
        g
        for g in v.groups
        if g.functional_id not in ("", _FUNCTIONAL_ACK) and g.control and g.guide.startswith("005010")
    ]


def _element_position(element: str) -> tuple[str, ...]:
    """CLM05-1 -> ("5", "1") (IK401: element position, component position), () when unknown."""
    name, _, component = element.partition("-")
    number = name[-2:]
    if not number.isdigit():
        return ()
    return (str(int(number)), str(int(component))) if component.isdigit() else (str(int(number)),)


def _ik3_loops(issues: Sequence[X12Issue]) -> list[str]:
    """IK3 (and its IK4s) for each segment in error, in the order of the segments."""
    by_segment: dict[tuple[int, str], list[X12Issue]] = {}
    for issue in issues:
        if issue.level in (IssueLevel.SEGMENT, IssueLevel.ELEMENT) and issue.position is not None:
            by_segment.setdefault((issue.position, issue.segment_id), []).append(issue)
    out: list[str] = []
    for (position, segment_id), found in sorted(by_segment.items()):
        if not _SEGMENT_ID.fullmatch(segment_id):
            continue  # IK301 must be a segment id; the set's IK5 still says 5 (segments in error)
        codes = list(dict.fromkeys(i.code for i in found if i.level is IssueLevel.SEGMENT))
        elements = [i for i in found if i.level is IssueLevel.ELEMENT and _element_position(i.element)]
        if elements and "8" not in codes:
            codes.append("8")
        for code in codes:
            out.append(_segment("IK3", segment_id, str(position), "", code))
            if code != "8":
                continue
            for issue in elements[:_MAX_IK4_PER_IK3]:
                out.append(_segment("IK4", _element_position(issue.element), issue.element_ref, issue.code))
    return out


def _ik5_verdict(s: SetValidation) -> str:
    return "A" if s.verdict is SetVerdict.NOT_VALIDATED else s.verdict.value


def _ak9_verdict(g: GroupValidation) -> str:
    return "A" if g.verdict is GroupVerdict.NOT_VALIDATED else g.verdict.value


def _st999(g: GroupValidation, control: int) -> list[str]:
    st02 = f"{control:04d}"
    body = [_segment("ST", "999", st02, ACK_GUIDE), _segment("AK1", g.functional_id, g.control, g.guide)]
    for s in g.sets:
        if not (s.code and s.control):
            continue  # an AK2 must name ST01 and ST02: such a set is counted in AK9 as received, not accepted
        guide = s.guide if s.guide.startswith("005010") else ""
        body.append(_segment("AK2", s.code, s.control, guide))
        body += _ik3_loops(s.issues)
        codes = s.codes if _ik5_verdict(s) != "A" else ()
        body.append(_segment("IK5", _ik5_verdict(s), *codes))
    codes = g.codes if _ak9_verdict(g) != "A" else ()
    received = len(g.sets)
    body.append(
        _segment("AK9", _ak9_verdict(g), str(g.declared_sets), str(received), str(g.accepted_sets), *codes)
    )
    body.append(_segment("SE", str(len(body) + 1), st02))
    return body


def _ack999(
    v: InterchangeValidation,
    groups: list[GroupValidation],
    sender: tuple[str, str],
    control: int,
    at: dt.datetime,
) -> str:
    x = v.interchange
    receiver = (x.isa.element(5), x.isa.element(6))
    first = next(g for g in x.groups if g.control == groups[0].control)
    lines = [
        _isa(sender, receiver, control, at, "00501", x.isa.element(15)),
        _segment(
            "GS",
            _FUNCTIONAL_ACK,
            first.gs.element(3),
            first.gs.element(2),
            at.strftime("%Y%m%d"),
            at.strftime("%H%M%S"),
            str(control),
            "X",
            ACK_GUIDE,
        ),
    ]
    for number, group in enumerate(groups, 1):
        lines += _st999(group, number)
    lines.append(_segment("GE", str(len(groups)), str(control)))
    lines.append(_segment("IEA", "1", f"{control:09d}"))
    return _LINE_END.join(lines) + _LINE_END


def acknowledgments(
    validation: InterchangeValidation, *, sender: tuple[str, str], control_number: int, at: dt.datetime
) -> Acknowledgments:
    """Return the TA1 and the 999 that answer one validated interchange (each None when not due).

    ``sender`` is hcsync's own ISA qualifier and id; ``control_number`` is the ISA13 (and the 999's GS06)
    of the first interchange written, the next one taking the number after it; ``at`` dates them. Raises
    ConfigurationError for a sender or control number that cannot be written.
    """
    _check_sender(sender, control_number)
    x = validation.interchange
    control = control_number
    ta1 = None
    if validation.ta1_needed and not _answers_ta1_only(x):
        ta1 = _ta1(validation, sender, control, at)
        control += 1
    groups = _acknowledged(validation)
    ack = None
    if groups:
        ack = _ack999(validation, groups, sender, control, at)
        control += 1
    return Acknowledgments(ta1=ta1, ack999=ack, next_control=control)


# --------------------------------------------------------------------------- reading inbound acknowledgments


@dataclass(frozen=True, slots=True)
class InterchangeAcknowledgment:
    """A TA1: the verdict on one interchange hcsync sent."""

    control: str  # TA101: the acknowledged ISA13
    verdict: str  # TA104: A, E or R
    code: str  # TA105
    reason: str


@dataclass(frozen=True, slots=True)
class SetAcknowledgment:
    """An AK2..IK5 (999) or AK2..AK5 (997): the verdict on one transaction set hcsync sent."""

    code: str  # AK201: 837...
    control: str  # AK202: the acknowledged ST02
    guide: str  # AK203
    verdict: str  # IK501 / AK501: A, E, M, R, W, X
    codes: tuple[str, ...]  # IK502..IK506
    errors: tuple[str, ...]  # each IK3/IK4 as text: "segment CLM at 19, element CLM05-1: invalid code value"


@dataclass(frozen=True, slots=True)
class GroupAcknowledgment:
    """An AK1..AK9: the verdict on one functional group hcsync sent, and on each of its sets."""

    functional_id: str  # AK101
    control: str  # AK102: the acknowledged GS06
    guide: str  # AK103
    verdict: str  # AK901: A, E, P, R...
    declared: int  # AK902
    received: int  # AK903
    accepted: int  # AK904
    codes: tuple[str, ...]  # AK905..AK909
    sets: tuple[SetAcknowledgment, ...]


@dataclass(frozen=True, slots=True)
class AcknowledgmentReport:
    """Every acknowledgment one inbound interchange carries."""

    control: str  # its own ISA13
    sender: tuple[str, str]  # its ISA05, ISA06
    interchanges: tuple[InterchangeAcknowledgment, ...]  # its TA1s
    groups: tuple[GroupAcknowledgment, ...]  # its 999/997 groups


_SET_VERDICTS = frozenset("AEMRWX")
_GROUP_VERDICTS = frozenset("AEMPRWX")
_TA1_VERDICTS = frozenset("AER")


def _refuse(x: Interchange, where: str, segment: Segment | None, field_name: str, reason: str) -> DecodeError:
    return DecodeError(
        Fault(
            rule="X12-ACK-INVALID",
            reason=reason,
            message_id=f"ISA13 {x.control}{where}",
            segment=segment.id if segment is not None else "",
            field=field_name,
            position=segment.position if segment is not None else None,
        )
    )


def _number(x: Interchange, where: str, segment: Segment, index: int) -> int:
    value = segment.element(index)
    if not value.isdigit():
        raise _refuse(x, where, segment, f"{segment.id}{index:02d}", "must be a count (digits)")
    return int(value)


def _error_text(segment: Segment, component: str, context: str) -> str:
    """An IK3/AK3 or IK4/AK4 as a line of text (codes and positions only: IK404 may hold PHI)."""
    if segment.id in ("IK3", "AK3"):
        code = segment.element(4)
        where = f"segment {segment.element(1)} at {segment.element(2)}"
        return f"{where}: [{code}] {SEGMENT_CODES.get(code, 'error')}"
    position = segment.element(1).split(component)
    element = f"{int(position[0]):02d}" if position[0].isdigit() else position[0]
    if len(position) > 1 and position[1]:
        element += f"-{position[1]}"
    code = segment.element(3)
    return f"{context}, element {element}: [{code}] {ELEMENT_CODES.get(code, 'error')}"


def _read_ta1(x: Interchange, segment: Segment) -> InterchangeAcknowledgment:
    verdict, code = segment.element(4), segment.element(5)
    if not segment.element(1) or verdict not in _TA1_VERDICTS:
        raise _refuse(x, "", segment, "TA104", f"TA1 needs TA101 and a TA104 of {sorted(_TA1_VERDICTS)}")
    return InterchangeAcknowledgment(
        segment.element(1), verdict, code, TA1_CODES.get(code, "") if code != "000" else ""
    )


class _GroupReader:
    """Reads one FA group's AK1..AK9 transaction sets (several ST per group are allowed)."""

    def __init__(self, x: Interchange, where: str) -> None:
        self.x, self.where = x, where
        self.found: list[GroupAcknowledgment] = []

    def read(self, segments: Iterable[Segment]) -> None:
        ak1: Segment | None = None
        sets: list[SetAcknowledgment] = []
        current: Segment | None = None
        errors: list[str] = []
        context = ""
        component = self.x.delimiters.component
        for segment in segments:
            sid = segment.id
            if sid == "AK1":
                ak1, sets = segment, []
                if not segment.element(1) or not segment.element(2):
                    raise _refuse(self.x, self.where, segment, "AK102", "AK1 needs AK101 and AK102")
            elif sid == "AK2":
                if ak1 is None:
                    raise _refuse(self.x, self.where, segment, "", "AK2 before AK1")
                if not segment.element(1) or not segment.element(2):
                    raise _refuse(self.x, self.where, segment, "AK202", "AK2 needs AK201 and AK202")
                current, errors = segment, []
            elif sid in ("IK3", "AK3", "IK4", "AK4"):
                if current is None:
                    raise _refuse(self.x, self.where, segment, "", f"{sid} outside an AK2")
                if sid.endswith("3"):
                    context = f"segment {segment.element(1)} at {segment.element(2)}"
                errors.append(_error_text(segment, component, context))
            elif sid in ("IK5", "AK5"):
                if current is None:
                    raise _refuse(self.x, self.where, segment, "", f"{sid} outside an AK2")
                verdict = segment.element(1)
                if verdict not in _SET_VERDICTS:
                    raise _refuse(self.x, self.where, segment, f"{sid}01", "not an acknowledgment code")
                codes = tuple(c for c in segment.elements[1:6] if c)
                sets.append(
                    SetAcknowledgment(
                        current.element(1),
                        current.element(2),
                        current.element(3),
                        verdict,
                        codes,
                        tuple(errors),
                    )
                )
                current = None
            elif sid == "AK9":
                if ak1 is None or current is not None:
                    raise _refuse(self.x, self.where, segment, "", "AK9 without AK1, or before IK5/AK5")
                if segment.element(1) not in _GROUP_VERDICTS:
                    raise _refuse(self.x, self.where, segment, "AK901", "not an acknowledgment code")
                self.found.append(
                    GroupAcknowledgment(
                        ak1.element(1),
                        ak1.element(2),
                        ak1.element(3),
                        segment.element(1),
                        _number(self.x, self.where, segment, 2),
                        _number(self.x, self.where, segment, 3),
                        _number(self.x, self.where, segment, 4),
                        tuple(c for c in segment.elements[4:9] if c),
                        tuple(sets),
                    )
                )
                ak1 = None
        if ak1 is not None:
            raise _refuse(self.x, self.where, None, "AK9", f"AK1 {ak1.element(2)} has no AK9")


def read_acknowledgment(interchange: Interchange) -> AcknowledgmentReport:
    """Read the TA1s, 999s and 997s of an inbound interchange; raise a located DecodeError when malformed.

    Groups other than FA (functional acknowledgments) are refused: they are not acknowledgments.
    """
    x = interchange
    tas = tuple(_read_ta1(x, s) for s in x.loose if s.id == "TA1")
    groups: list[GroupAcknowledgment] = []
    for group in x.groups:
        where = f", GS06 {group.control}"
        if group.functional_id != _FUNCTIONAL_ACK:
            raise _refuse(
                x,
                where,
                group.gs,
                "GS01",
                f"GS01 {group.functional_id or '(empty)'} is no acknowledgment (FA)",
            )
        for t in group.transactions:
            if t.code not in ("999", "997"):
                raise _refuse(x, f"{where}, ST02 {t.control}", t.st, "ST01", "not a 999 or 997")
            reader = _GroupReader(x, f"{where}, ST02 {t.control}")
            reader.read(t.segments[1:-1] if t.segments[-1].id == "SE" else t.segments[1:])
            groups += reader.found
    if not tas and not groups:
        raise _refuse(x, "", x.isa, "", "the interchange carries no TA1, 999 or 997")
    sender = (x.isa.element(5).strip(), x.isa.element(6).strip())
    return AcknowledgmentReport(x.control, sender, tas, tuple(groups))
