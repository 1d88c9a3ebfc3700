"""Read X12 files as senders deliver them into interchanges, functional groups and transaction sets.

Neither X12 library hcsync uses reads every real file (docs in issue 14's research): pyx12 opens files as
ASCII (a UTF-8 byte-order mark raises) and takes the delimiters of the first ISA for the whole file;
x12sdk refuses a byte-order mark, drops the envelope, and reads nothing when the segment terminator is a
newline. So hcsync splits a file here first, each interchange with the delimiters its own ISA declares,
and hands each interchange's text to the libraries; the envelope (ISA/GS/ST control numbers, counts) is
read and checked here, which is what a TA1 and a 999's envelope answers need.

The delimiters (X12.6): the character after ``ISA`` separates elements; ISA16 is the component separator
and the character after it ends segments; ISA11 is the repetition separator from version 00402 on (it is
the standards identifier ``U`` before). ISA is fixed-length (106 characters), but senders trim or pad it,
so the delimiters are read by position in the element list, not by offset. Whitespace around segments
(CRLF after each terminator, a final newline) is not data and is dropped, unless the terminator is itself
a line end.

Errors that make an interchange unreadable (no ISA, ISA without 16 elements) raise a located
:class:`DecodeError`; envelope faults inside a readable interchange (a count or control number that does
not match, a trailer missing, a segment outside any envelope) are collected on the interchange as
:class:`Fault` s, since the acknowledgments must answer them rather than give up on the file. A fault names
the interchange, group and transaction control numbers (``message_id``), the segment id, the element
(``SE01``) and the segment's position (1-based, in the transaction set from ST, else in the interchange
from ISA, as a 999's IK3 and a TA1 count them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canonical.errors import DecodeError, Fault

__all__ = ["Delimiters", "Group", "Interchange", "Segment", "Transaction", "read_interchanges"]

_UTF8_BOM = "\ufeff"
_ISA_ELEMENTS = 16
# ISA12 from which ISA11 is the repetition separator (before it, ISA11 is the standards identifier "U").
_REPETITION_FROM_VERSION = "00402"
_LINE_ENDS = "\r\n"


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The delimiters one interchange declares in its ISA."""

    element: str
    component: str
    segment: str
    repetition: str | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: its id, its elements (element 1 first) and its position in the interchange (ISA is 1)."""

    id: str
    elements: tuple[str, ...]
    position: int

    def element(self, number: int) -> str:
        """Return element ``number`` (1-based, as ``CLM01``), or "" when the segment has fewer."""
        return self.elements[number - 1] if 0 < number <= len(self.elements) else ""


@dataclass(slots=True)
class Transaction:
    """A transaction set, ST to SE inclusive."""

    st: Segment
    segments: list[Segment] = field(default_factory=list)

    @property
    def control(self) -> str:
        """ST02, the transaction set control number."""
        return self.st.element(2)

    @property
    def code(self) -> str:
        """ST01, the transaction set identifier (837, 835, 270...)."""
        return self.st.element(1)

    def position_of(self, segment: Segment) -> int:
        """Return ``segment``'s position in this transaction set, ST being 1 (a 999's IK302)."""
        return segment.position - self.st.position + 1


@dataclass(slots=True)
class Group:
    """A functional group, GS to GE inclusive."""

    gs: Segment
    transactions: list[Transaction] = field(default_factory=list)
    ge: Segment | None = None

    @property
    def control(self) -> str:
        """GS06, the group control number."""
        return self.gs.element(6)

    @property
    def functional_id(self) -> str:
        """GS01: HC claims, HP remittance, HS/HB eligibility, FA acknowledgments..."""
        return self.gs.element(1)

    @property
    def version(self) -> str:
        """GS08, the implementation guide (005010X222A1...)."""
        return self.gs.element(8)


@dataclass(slots=True)
class Interchange:
    """One interchange: its ISA, delimiters, groups, trailer, envelope faults and its own text."""

    isa: Segment
    delimiters: Delimiters
    text: str
    encoding: str = "utf-8"  # of the file it came from: ``text.encode(encoding)`` gives its bytes back
    groups: list[Group] = field(default_factory=list)
    iea: Segment | None = None
    faults: list[Fault] = field(default_factory=list)
    # Segments outside any group (a TA1 answering one of ours sits between ISA and the first GS).
    loose: list[Segment] = field(default_factory=list)

    @property
    def control(self) -> str:
        """ISA13, the interchange control number."""
        return self.isa.element(13)

    @property
    def version(self) -> str:
        """ISA12, the interchange control version (00501, 00401...)."""
        return self.isa.element(12)

    @property
    def ack_requested(self) -> bool:
        """ISA14: whether the sender asks for a TA1."""
        return self.isa.element(14) == "1"


def _decode(data: bytes) -> tuple[str, str]:
    """Return the text and its encoding: UTF-8 (X12's extended set in practice), else Latin-1."""
    try:
        return data.decode("utf-8").removeprefix(_UTF8_BOM), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _isa(text: str, start: int, source: str) -> tuple[Delimiters, int, list[str]]:
    """Read the ISA at ``start``: its delimiters, where its segment ends, and its elements."""
    separator = text[start + 3 : start + 4]
    if not separator or separator.isalnum() or separator.isspace():
        raise DecodeError(
            Fault(
                rule="X12-ISA-INVALID",
                reason="the character after ISA must be the element separator",
                message_id=source,
                segment="ISA",
                position=start,
            )
        )
    parts = text[start:].split(separator, _ISA_ELEMENTS)
    # parts[16] starts with ISA16 (the component separator), then the segment terminator.
    if len(parts) <= _ISA_ELEMENTS or len(parts[_ISA_ELEMENTS]) < 2:
        raise DecodeError(
            Fault(
                rule="X12-ISA-INVALID",
                reason=f"ISA has fewer than {_ISA_ELEMENTS} elements and a segment terminator",
                message_id=source,
                segment="ISA",
                position=start,
            )
        )
    component, terminator = parts[_ISA_ELEMENTS][0], parts[_ISA_ELEMENTS][1]
    elements = [*parts[1:_ISA_ELEMENTS], component]
    version, isa11 = elements[11].strip(), elements[10]
    repetition = (
        isa11 if version >= _REPETITION_FROM_VERSION and len(isa11) == 1 and not isa11.isalnum() else None
    )
    end = start + sum(len(part) + 1 for part in parts[:_ISA_ELEMENTS]) + 2
    return Delimiters(separator, component, terminator, repetition), end, elements


def _fault(where: str, segment: Segment, field_name: str, reason: str, position: int) -> Fault:
    return Fault(
        rule="X12-ENVELOPE",
        reason=reason,
        message_id=where,
        segment=segment.id,
        field=field_name,
        position=position,
    )


class _Reader:
    """Builds one interchange from its segments, checking counts and control numbers as it goes."""

    def __init__(self, interchange: Interchange, source: str) -> None:
        self.x = interchange
        self.source = source
        self.group: Group | None = None
        self.transaction: Transaction | None = None

    def where(self) -> str:
        parts = [self.source] if self.source else []
        parts.append(f"ISA13 {self.x.control}")
        if self.group is not None:
            parts.append(f"GS06 {self.group.control}")
        if self.transaction is not None:
            parts.append(f"ST02 {self.transaction.control}")
        return ", ".join(parts)

    def add(self, segment: Segment) -> None:
        handler = {"GS": self._gs, "ST": self._st, "SE": self._se, "GE": self._ge}.get(segment.id)
        if handler is not None:
            handler(segment)
        elif self.transaction is not None:
            self.transaction.segments.append(segment)
        elif segment.id == "TA1" and self.group is None:
            self.x.loose.append(segment)
        else:
            self._outside(segment)

    def _outside(self, segment: Segment) -> None:
        self.x.loose.append(segment)
        self.x.faults.append(
            _fault(self.where(), segment, "", "segment outside any transaction set", segment.position)
        )

    def _gs(self, segment: Segment) -> None:
        if self.group is not None:
            self._close_group(segment, "GE missing before the next GS")
        self.group = Group(segment)
        self.x.groups.append(self.group)

    def _st(self, segment: Segment) -> None:
        if self.group is None:
            self._outside(segment)
            return
        if self.transaction is not None:
            self._close_transaction(segment, "SE missing before the next ST")
        self.transaction = Transaction(segment, [segment])
        self.group.transactions.append(self.transaction)

    def _se(self, segment: Segment) -> None:
        t = self.transaction
        if t is None:
            self._outside(segment)
            return
        t.segments.append(segment)
        count = t.position_of(segment)
        if segment.element(1) != str(count):
            self.x.faults.append(
                _fault(
                    self.where(),
                    segment,
                    "SE01",
                    f"says {segment.element(1) or 'nothing'} segments, the transaction set has {count}",
                    count,
                )
            )
        if segment.element(2) != t.control:
            self.x.faults.append(
                _fault(self.where(), segment, "SE02", f"does not match ST02 {t.control}", count)
            )
        self.transaction = None

    def _ge(self, segment: Segment) -> None:
        g = self.group
        if g is None:
            self._outside(segment)
            return
        if self.transaction is not None:
            self._close_transaction(segment, "SE missing before GE")
        g.ge = segment
        if segment.element(1) != str(len(g.transactions)):
            self.x.faults.append(
                _fault(
                    self.where(),
                    segment,
                    "GE01",
                    f"says {segment.element(1) or 'no'} transaction sets, "
                    f"the group has {len(g.transactions)}",
                    segment.position,
                )
            )
        if segment.element(2) != g.control:
            self.x.faults.append(
                _fault(self.where(), segment, "GE02", f"does not match GS06 {g.control}", segment.position)
            )
        self.group = None

    def _close_transaction(self, at: Segment, reason: str) -> None:
        self.x.faults.append(_fault(self.where(), at, "", reason, at.position))
        self.transaction = None

    def _close_group(self, at: Segment, reason: str) -> None:
        if self.transaction is not None:
            self._close_transaction(at, "SE missing before the end of the group")
        self.x.faults.append(_fault(self.where(), at, "", reason, at.position))
        self.group = None

    def end(self, iea: Segment | None, last_position: int) -> None:
        """Close the interchange at its IEA (None: the text ended without one)."""
        closing = iea or Segment("IEA", (), last_position + 1)
        if self.group is not None:
            self._close_group(closing, "GE missing before the end of the interchange")
        if iea is None:
            self.x.faults.append(
                _fault(
                    self.where(), closing, "", "IEA missing: the interchange is cut short", closing.position
                )
            )
            return
        self.x.iea = iea
        if iea.element(1) != str(len(self.x.groups)):
            self.x.faults.append(
                _fault(
                    self.where(),
                    iea,
                    "IEA01",
                    f"says {iea.element(1) or 'no'} functional groups, "
                    f"the interchange has {len(self.x.groups)}",
                    iea.position,
                )
            )
        if iea.element(2) != self.x.control:
            self.x.faults.append(
                _fault(self.where(), iea, "IEA02", f"does not match ISA13 {self.x.control}", iea.position)
            )


def _segments(text: str, start: int, delimiters: Delimiters) -> tuple[list[str], int]:
    """Split the segments after an ISA up to and including its IEA; return them and where they ended."""
    out: list[str] = []
    position = start
    keep_line_ends = delimiters.segment in _LINE_ENDS
    while position < len(text):
        end = text.find(delimiters.segment, position)
        raw = text[position:] if end < 0 else text[position:end]
        position = len(text) if end < 0 else end + 1
        body = raw.strip(" \t") if keep_line_ends else raw.strip()
        if not body:
            continue
        out.append(body)
        if body.split(delimiters.element, 1)[0] == "IEA":
            break
    return out, position


def read_interchanges(data: bytes, source: str = "") -> list[Interchange]:
    """Return every interchange of ``data`` (a file), each read with the delimiters its own ISA declares.

    ``source`` (a file name) prefixes the location of every fault. Raises DecodeError when the data holds no
    ISA where one must start, or an ISA that cannot be read.
    """
    text, encoding = _decode(data)
    interchanges: list[Interchange] = []
    position = 0
    while True:
        rest = text[position:].lstrip()
        if not rest:
            break
        start = len(text) - len(rest)
        if not rest.startswith("ISA"):
            what = (
                "no X12 interchange: the data does not start with ISA"
                if not interchanges
                else ("data after the last IEA that is not another interchange")
            )
            raise DecodeError(Fault(rule="X12-ISA-MISSING", reason=what, message_id=source, position=start))
        delimiters, after_isa, elements = _isa(text, start, source)
        isa = Segment("ISA", tuple(elements), 1)
        raw_segments, position = _segments(text, after_isa, delimiters)
        interchange = Interchange(isa, delimiters, text[start:position], encoding)
        reader = _Reader(interchange, source)
        iea: Segment | None = None
        for number, raw in enumerate(raw_segments, 2):
            parts = raw.split(delimiters.element)
            segment = Segment(parts[0], tuple(parts[1:]), number)
            if segment.id == "IEA":
                iea = segment
                break
            reader.add(segment)
        reader.end(iea, len(raw_segments) + 1)
        interchanges.append(interchange)
    if not interchanges:
        raise DecodeError(
            Fault(
                rule="X12-ISA-MISSING",
                reason="no X12 interchange: the data is empty",
                message_id=source,
                position=0,
            )
        )
    return interchanges
