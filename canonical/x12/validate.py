"""Validate one X12 interchange with pyx12's maps, into located results a 999 and a TA1 are written from.

Why this shape (issue 14, item 2; research in docs/x12-research.md):

- **One interchange at a time.** The envelope reader (envelope.py) already split the file and knows each
  interchange's delimiters; pyx12 takes the first ISA's delimiters for a whole file and needs a
  fixed-width ISA. So pyx12 gets one interchange re-rendered from the reader's segments: the ISA padded to
  its fixed widths, one segment after the other with the interchange's own delimiters, no line ends.
- **Group by group.** ``x12n_document`` stops the whole file with an ``EngineError`` at the first group
  it has no map for. The walk here is the one it does (pyx12's ``walk_tree`` and error handler), fed only
  the groups pyx12 has a map for, so a 271 beside an 837 does not stop the 837's validation. A group pyx12
  has no map for (270/271 X279A1, 276/277 X212, 278, 275...) and 004010 content get a NOT_VALIDATED
  verdict saying so; their envelope faults still count.
- **Nearest maps.** X222A2 and X223A3 are validated with the nearest map pyx12 has (maps.py); the result
  says which map validated each set.
- **Located, PHI-free issues.** Every issue names ISA13, GS06, ST02, the segment and its position in the
  set (a 999's IK302), the loop, the element (``CLM05-1``), the X12 code a 999 or TA1 carries, and a
  reason built from the code and the map's names, never from the data: pyx12's own messages quote the
  values (names, member ids), so they are not passed on.
- **Envelope faults** from envelope.py become issues with the codes the 999 (IK5, AK9) and TA1 (TA105)
  guides give them. pyx12 finds the same count and control-number faults; those are left to the reader,
  so each fault is reported once.
- **Never a crash.** Anything pyx12 raises is caught and becomes a located issue; the groups it was
  validating are then NOT_VALIDATED, with the reason.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyx12.error_handler
import pyx12.map_walker
import pyx12.x12file
from pyx12.map_if._segment import apply_segment_errors

from canonical.errors import Fault
from canonical.x12 import maps
from canonical.x12.envelope import Group, Interchange, Segment, Transaction

__all__ = [
    "ELEMENT_CODES",
    "GROUP_CODES",
    "SEGMENT_CODES",
    "SET_CODES",
    "TA1_CODES",
    "GroupValidation",
    "GroupVerdict",
    "InterchangeValidation",
    "IssueLevel",
    "SetValidation",
    "SetVerdict",
    "X12Issue",
    "validate",
]

# pyx12 logs each finding at ERROR with the offending value (PHI) in the text; hcsync reports the
# findings itself, located and without the values.
logging.getLogger("pyx12").setLevel(logging.CRITICAL)

# ISA element widths (X12.5): pyx12 reads the delimiters at fixed offsets of a 106-character ISA.
_ISA_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)
# TA105 codes for an ISA element pyx12 or the fixed width rejects (the stock 999 writer's table).
_TA1_FOR_ISA_ELEMENT = {
    1: "010",
    2: "011",
    3: "012",
    4: "013",
    5: "005",
    6: "006",
    7: "007",
    8: "008",
    9: "014",
    10: "015",
    11: "016",
    12: "017",
    13: "018",
    14: "019",
    15: "020",
    16: "027",
}
_TA1_FOR_IEA_ELEMENT = {1: "021", 2: "018"}
_INTERCHANGE_VERSIONS = ("00401", "00501")
_NO_TA1_ERROR = "000"

# Envelope codes pyx12's reader also finds; the envelope reader's faults already carry them.
_READER_CODES = {"isa": {"001", "021", "023", "024"}, "gs": {"3", "4", "5"}, "st": {"2", "3", "4"}}
# pyx12 reports a GS06 used twice in an interchange as "6" (syntax); the 999 code for it is 19.
_GS_CODE_FIXES = {"6": "19"}
# pyx12's own segment findings that are no IK304 code: trailing separators (SEG1), the HL count and
# parent (HL1, HL2), the 837's LX numbering (LX). A 999 carries them as "8" (data element errors).
_SEGMENT_CODE_FIXES = {"SEG1": "8", "HL1": "8", "HL2": "8", "LX": "8"}
_SEGMENT_CODE_ELEMENTS = {"HL1": "HL01", "HL2": "HL02", "LX": "LX01"}
SEGMENT_CODES = {
    "1": "unrecognized segment id",
    "2": "unexpected segment",
    "3": "required segment missing",
    "4": "loop occurs over maximum times",
    "5": "segment exceeds maximum use",
    "6": "segment not in defined transaction set",
    "7": "segment not in proper sequence",
    "8": "segment has data element errors",
    "I4": "implementation 'not used' segment present",
    "I6": "implementation dependent segment missing",
    "I7": "implementation loop occurs under minimum times",
    "I8": "implementation segment below minimum use",
    "I9": "implementation dependent 'not used' segment present",
}
ELEMENT_CODES = {
    "1": "required data element missing",
    "2": "conditional required data element missing",
    "3": "too many data elements",
    "4": "data element too short",
    "5": "data element too long",
    "6": "invalid character in data element",
    "7": "invalid code value",
    "8": "invalid date",
    "9": "invalid time",
    "10": "exclusion condition violated",
    "12": "too many repetitions",
    "13": "too many components",
    "I10": "implementation 'not used' data element present",
    "I11": "implementation too few repetitions",
    "I12": "implementation pattern match failure",
    "I13": "implementation dependent 'not used' data element present",
    "I6": "code value not used in implementation",
    "I9": "implementation dependent data element missing",
}
SET_CODES = {
    "1": "transaction set not supported",
    "2": "transaction set trailer missing",
    "3": "transaction set control number in header and trailer do not match",
    "4": "number of included segments does not match actual count",
    "5": "one or more segments in error",
    "6": "missing or invalid transaction set identifier",
    "7": "missing or invalid transaction set control number",
    "23": "transaction set control number not unique within the functional group",
    "I5": "implementation one or more segments in error",
    "I6": "implementation convention not supported",
}
GROUP_CODES = {
    "1": "functional group not supported",
    "2": "functional group version not supported",
    "3": "functional group trailer missing",
    "4": "group control number in the functional group header and trailer do not agree",
    "5": "number of included transaction sets does not match actual count",
    "6": "group control number violates syntax",
    "19": "functional group control number not unique within interchange",
}
TA1_CODES = {
    "001": "the interchange control number in the header and trailer do not match",
    "003": "this version of the controls is not supported",
    "021": "invalid number of included groups value",
    "023": "improper (premature) end-of-file",
    "024": "invalid interchange content",
    "025": "duplicate interchange control number",
}
# pyx12 names the element in its messages as (CLM05) or (CLM05-1); the last such group is the element.
_REFDES = re.compile(r"\(([A-Z][A-Z0-9]{1,2}\d{2}(?:-\d+)?)\)")
_LENGTH = re.compile(r"= (\d+) ([<>]) (\d+) \((min|max)_len\)")


class IssueLevel(StrEnum):
    """Where an issue sits, which says which acknowledgment code it carries."""

    INTERCHANGE = "interchange"  # TA105
    GROUP = "group"  # AK905..AK909
    SET = "set"  # IK502..IK506
    SEGMENT = "segment"  # IK304
    ELEMENT = "element"  # IK403


class SetVerdict(StrEnum):
    """IK501 for a validated set; NOT_VALIDATED when pyx12 has no map for it (envelope checked only)."""

    ACCEPTED = "A"
    ACCEPTED_WITH_ERRORS = "E"
    REJECTED = "R"
    NOT_VALIDATED = "NOT_VALIDATED"


class GroupVerdict(StrEnum):
    """AK901 for a validated group; NOT_VALIDATED when pyx12 has no map for it (envelope checked only)."""

    ACCEPTED = "A"
    ACCEPTED_WITH_ERRORS = "E"
    PARTIALLY_ACCEPTED = "P"
    REJECTED = "R"
    NOT_VALIDATED = "NOT_VALIDATED"


@dataclass(frozen=True, slots=True)
class X12Issue:
    """One located finding: where it is, the X12 code an acknowledgment carries for it, and why."""

    level: IssueLevel
    isa13: str
    gs06: str
    st02: str
    segment_id: str
    position: int | None  # in the set from ST (IK302) for a set's segments, else in the interchange
    loop_id: str
    element: str  # "CLM02", "CLM05-1"; "" for a segment, set, group or interchange issue
    code: str  # IK403 / IK304 / IK5 / AK9 / TA105 code, by level
    reason: str
    element_ref: str = ""  # the data element reference number (IK402), when the map knows it

    def location(self) -> str:
        """Render where the issue is and its code as one line, naming every control number."""
        parts = [f"ISA13 {self.isa13}"]
        if self.gs06:
            parts.append(f"GS06 {self.gs06}")
        if self.st02:
            parts.append(f"ST02 {self.st02}")
        if self.segment_id:
            at = f" at {self.position}" if self.position is not None else ""
            parts.append(f"segment {self.segment_id}{at}")
        if self.loop_id:
            parts.append(f"loop {self.loop_id}")
        if self.element:
            parts.append(f"element {self.element}")
        return f"{', '.join(parts)}: [{_CODE_NAMES[self.level]} {self.code}] {self.reason}"


_CODE_NAMES = {
    IssueLevel.INTERCHANGE: "TA1",
    IssueLevel.GROUP: "AK9",
    IssueLevel.SET: "IK5",
    IssueLevel.SEGMENT: "IK3",
    IssueLevel.ELEMENT: "IK4",
}


@dataclass(frozen=True, slots=True)
class SetValidation:
    """The verdict on one transaction set (an AK2/IK5 pair of the 999)."""

    group_control: str  # GS06
    control: str  # ST02
    code: str  # ST01
    guide: str  # ST03, else GS08
    verdict: SetVerdict
    issues: tuple[X12Issue, ...]
    validated_with: str  # "X222A1 map (nearest to X222A2)", or why it was not validated

    @property
    def codes(self) -> tuple[str, ...]:
        """IK502..IK506: the set's own codes, and 5 when a segment or element is in error (at most 5)."""
        found = [i.code for i in self.issues if i.level is IssueLevel.SET]
        if any(i.level in (IssueLevel.SEGMENT, IssueLevel.ELEMENT) for i in self.issues):
            found.append("5")
        return tuple(dict.fromkeys(found))[:5]


@dataclass(frozen=True, slots=True)
class GroupValidation:
    """The verdict on one functional group (an AK1..AK9 of the 999)."""

    control: str  # GS06
    functional_id: str  # GS01
    guide: str  # GS08
    verdict: GroupVerdict
    sets: tuple[SetValidation, ...]
    issues: tuple[X12Issue, ...]  # the group's own (AK905..AK909)
    declared_sets: int  # GE01 as a number, else the sets received
    validated_with: str

    @property
    def codes(self) -> tuple[str, ...]:
        """AK905..AK909: the group's own codes (at most 5)."""
        return tuple(dict.fromkeys(i.code for i in self.issues))[:5]

    @property
    def accepted_sets(self) -> int:
        """AK904: the sets accepted, with or without errors noted (not-validated sets count as received)."""
        return sum(
            s.verdict in (SetVerdict.ACCEPTED, SetVerdict.ACCEPTED_WITH_ERRORS, SetVerdict.NOT_VALIDATED)
            for s in self.sets
        )


@dataclass(frozen=True, slots=True)
class InterchangeValidation:
    """The verdict on one interchange: its TA1 (when needed), its own issues and its groups."""

    interchange: Interchange
    ta1_needed: bool  # ISA14 = 1, or an envelope fault at the interchange level
    ta1_code: str  # TA105: 000 when the envelope is sound
    issues: tuple[X12Issue, ...]  # interchange level (TA1)
    groups: tuple[GroupValidation, ...]

    @property
    def ta1_verdict(self) -> str:
        """TA104: A when the envelope is sound, R otherwise."""
        return "A" if not self.issues else "R"

    def all_issues(self) -> list[X12Issue]:
        """Every issue of the interchange, its groups and their sets, in that order."""
        found = list(self.issues)
        for group in self.groups:
            found += group.issues
            for one in group.sets:
                found += one.issues
        return found


# --------------------------------------------------------------------------- envelope faults


def _control_of(fault: Fault, marker: str) -> str | None:
    """The control number ``marker`` (``GS06``, ``ST02``) the envelope reader named in a fault."""
    found = re.search(rf"(?:^|, ){marker} ([^,]*)", fault.message_id)
    return found.group(1) if found else None


def _envelope_issue(x: Interchange, fault: Fault, gs06: str, st02: str) -> X12Issue:
    """An envelope reader's fault as an issue, with the code a 999 or TA1 gives it."""
    field_name, reason = fault.field, fault.reason
    position = fault.position
    if field_name in ("SE01", "SE02") or reason.startswith("SE missing"):
        code = {"SE01": "4", "SE02": "3"}.get(field_name, "2")
        level, text = IssueLevel.SET, SET_CODES[code]
    elif field_name in ("GE01", "GE02") or reason.startswith("GE missing"):
        code = {"GE01": "5", "GE02": "4"}.get(field_name, "3")
        level, text, st02 = IssueLevel.GROUP, GROUP_CODES[code], ""
    else:
        code = {"IEA01": "021", "IEA02": "001"}.get(field_name, "023" if "IEA missing" in reason else "024")
        level, text, gs06, st02 = IssueLevel.INTERCHANGE, TA1_CODES[code], "", ""
    return X12Issue(
        level=level,
        isa13=x.control,
        gs06=gs06,
        st02=st02,
        segment_id=fault.segment,
        position=position,
        loop_id="",
        element=field_name,
        code=code,
        reason=f"{text}: {reason}",
    )


# --------------------------------------------------------------------------- pyx12's walk


def _render(x: Interchange, groups: Sequence[Group]) -> str | None:
    """The interchange as pyx12 reads it: fixed-width ISA, only ``groups``, IEA01 counting them.

    None when the ISA cannot be made fixed-width (an element longer than its width).
    """
    d = x.delimiters
    isa = []
    for number, width in enumerate(_ISA_WIDTHS, 1):
        value = x.isa.element(number)
        if len(value) > width:
            return None
        isa.append(value.ljust(width) if number < len(_ISA_WIDTHS) else value)
    lines = [d.element.join(["ISA", *isa])]

    def seg(s: Segment) -> str:
        return d.element.join([s.id, *s.elements])

    for group in groups:
        lines.append(seg(group.gs))
        for t in group.transactions:
            lines += [seg(s) for s in t.segments]
        lines.append(seg(group.ge) if group.ge is not None else d.element.join(["GE", "", group.control]))
    lines.append(d.element.join(["IEA", str(len(groups)), x.control]))
    return d.segment.join(lines) + d.segment


@dataclass(slots=True)
class _Walk:
    """What one pyx12 walk left: its error tree, or where and why it failed."""

    errh: Any
    failure: str = ""
    failed_st02: str = ""
    failed_segment: str = ""
    failed_position: int | None = None


class _ErrorTree(pyx12.error_handler.err_handler):  # type: ignore[misc]
    """pyx12's error handler, also keeping the map loop (2300, 2010BA...) each segment error sits in.

    pyx12 records only the LS loop id (X12 LS/LE, which the HIPAA guides do not use); the map loop is what
    an engineer looks for.
    """

    def add_seg(self, map_node: Any, seg_data: Any, seg_count: int, cur_line: int, ls_id: str | None) -> None:
        super().add_seg(map_node, seg_data, seg_count, cur_line, ls_id)
        loop = ""
        try:
            parent = pyx12.map_walker.pop_to_parent_loop(map_node) if map_node is not None else None
            loop = str(parent.id) if parent is not None and parent.is_loop() else ""
        except Exception:  # a loop name is a nicety; never let it stop validation
            loop = ""
        self.cur_seg_node.map_loop = loop


def _walk(text: str, map_path: Path) -> _Walk:
    """pyx12's validation walk (as x12n_document does it) over one rendered interchange.

    The map of each group was checked to exist before the group was rendered; maps come from the
    process-wide cache. Any exception is caught and recorded with the segment it stopped at.
    """
    errh = _ErrorTree()
    walk = _Walk(errh)
    src: Any = None
    seg: Any = None
    try:
        src = pyx12.x12file.X12Reader(io.StringIO(text))
        control_file = maps.control_map_file()
        control = maps.load_map(control_file, map_path)
        index = maps.map_index(map_path)
        node = control.getnodebypath("/ISA_LOOP/ISA")
        walker = pyx12.map_walker.walk_tree()
        map_file = control_file
        current: Any = None
        icvn: str | None = None
        for seg in src:
            orig = node
            seg_id = seg.get_seg_id()
            if seg_id == "ISA":
                node = control.getnodebypath("/ISA_LOOP/ISA")
                walker.forceWalkCounterToLoopStart("/ISA_LOOP", "/ISA_LOOP/ISA")
            elif seg_id == "GS":
                node = control.getnodebypath("/ISA_LOOP/GS_LOOP/GS")
                walker.forceWalkCounterToLoopStart("/ISA_LOOP/GS_LOOP", "/ISA_LOOP/GS_LOOP/GS")
            else:
                node, _pop, _push, errors = walker.walk_errors(
                    node, seg, src.get_seg_count(), src.get_cur_line(), src.get_ls_id()
                )
                pyx12.map_walker.apply_walk_errors(errh, errors)
            if node is None:
                node = orig
                continue
            if seg_id == "ISA":
                errh.add_isa_loop(seg, src)
                icvn = seg.get_value("ISA12")
                errh.handle_errors(src.pop_errors())
            elif seg_id == "IEA":
                errh.handle_errors(src.pop_errors())
                errh.close_isa_loop(node, seg, src)
            elif seg_id == "GS":
                name = index.get_filename(icvn, seg.get_value("GS08"), seg.get_value("GS01"))
                if name != map_file:
                    map_file = name
                    current = maps.load_map(name, map_path)
                    src.check_837_lx = current.id == "837"
                node = current.getnodebypath("/ISA_LOOP/GS_LOOP/GS")
                errh.add_gs_loop(seg, src)
                errh.handle_errors(src.pop_errors())
            elif seg_id == "GE":
                errh.handle_errors(src.pop_errors())
                errh.close_gs_loop(node, seg, src)
            elif seg_id == "ST":
                errh.add_st_loop(seg, src)
                errh.handle_errors(src.pop_errors())
            elif seg_id == "SE":
                errh.handle_errors(src.pop_errors())
                errh.close_st_loop(node, seg, src)
            else:
                errh.add_seg(node, seg, src.get_seg_count(), src.get_cur_line(), src.get_ls_id())
                errh.handle_errors(src.pop_errors())
            apply_segment_errors(node, seg, errh)
        src.cleanup()
        errh.handle_errors(src.pop_errors())
    except Exception as exc:  # pyx12 must never crash hcsync; the failure is reported
        walk.failure = type(exc).__name__
        if src is not None:
            st02 = src.get_st_id()
            walk.failed_st02 = st02 or ""
            walk.failed_position = src.get_seg_count() if st02 else None
        if seg is not None:
            walk.failed_segment = str(seg.get_seg_id())[:3]
    return walk


# --------------------------------------------------------------------------- pyx12's tree -> issues


def _refdes(message: str) -> str:
    found = _REFDES.findall(message)
    return found[-1] if found else ""


def _element_name(seg_id: str, ele: Any) -> str:
    name = f"{seg_id}{int(ele.ele_pos):02d}"
    if ele.subele_pos:
        name += f"-{int(ele.subele_pos)}"
    return name


def _length_note(message: str) -> str:
    found = _LENGTH.search(message)
    if not found:
        return ""
    size, _op, limit, which = found.groups()
    return f" (length {size}, {'minimum' if which == 'min' else 'maximum'} {limit})"


class _Collector:
    """Turns pyx12's error tree for one interchange into issues, keyed by group and set."""

    def __init__(self, x: Interchange) -> None:
        self.x = x
        self.interchange: list[X12Issue] = []
        self.groups: dict[str, list[X12Issue]] = {}
        self.sets: dict[tuple[str, str], list[X12Issue]] = {}

    def issue(self, level: IssueLevel, gs06: str, st02: str, code: str, reason: str, **where: Any) -> None:
        found = X12Issue(
            level=level,
            isa13=self.x.control,
            gs06=gs06,
            st02=st02,
            segment_id=where.get("segment_id", ""),
            position=where.get("position"),
            loop_id=where.get("loop_id", "") or "",
            element=where.get("element", ""),
            code=code,
            reason=reason,
            element_ref=where.get("element_ref", "") or "",
        )
        if level is IssueLevel.INTERCHANGE:
            self.interchange.append(found)
        elif level is IssueLevel.GROUP:
            self.groups.setdefault(gs06, []).append(found)
        else:
            self.sets.setdefault((gs06, st02), []).append(found)

    def collect(self, errh: Any) -> None:
        for err_isa in errh.children:
            self._isa(err_isa)
            for err_gs in err_isa.children:
                self._gs(err_gs)
                for err_st in err_gs.children:
                    self._st(err_gs, err_st)

    def _isa(self, err_isa: Any) -> None:
        for code, _text in err_isa.errors:
            if code not in _READER_CODES["isa"]:
                self.issue(IssueLevel.INTERCHANGE, "", "", code, TA1_CODES.get(code, "interchange error"))
        for ele in err_isa.elements:
            for _code, text, _bad in ele.errors:
                element = _refdes(text)
                table = _TA1_FOR_IEA_ELEMENT if element.startswith("IEA") else _TA1_FOR_ISA_ELEMENT
                code = table.get(int(ele.ele_pos), "024")
                segment = element[:3] or "ISA"
                reason = f"invalid interchange element: {ele.name}"
                self.issue(IssueLevel.INTERCHANGE, "", "", code, reason, segment_id=segment, element=element)

    def _gs(self, err_gs: Any) -> None:
        gs06 = str(err_gs.gs_control_num or "")
        for code, _text in err_gs.errors:
            if code not in _READER_CODES["gs"]:
                fixed = _GS_CODE_FIXES.get(code, code)
                self.issue(
                    IssueLevel.GROUP, gs06, "", fixed, GROUP_CODES.get(fixed, "functional group error")
                )
        for ele in err_gs.elements:
            for _code, text, _bad in ele.errors:
                element = _refdes(text)
                position = int(ele.ele_pos)
                if element.startswith("GE"):
                    code = "6" if position == 2 else "1"
                else:
                    code = {6: "6", 8: "2"}.get(position, "1")
                reason = f"{GROUP_CODES[code]}: {ele.name}"
                self.issue(IssueLevel.GROUP, gs06, "", code, reason, segment_id=element[:2], element=element)

    def _st(self, err_gs: Any, err_st: Any) -> None:
        gs06 = str(err_gs.gs_control_num or "")
        st02 = str(err_st.trn_set_control_num or "").strip()
        for code, _text in err_st.errors:
            if code not in _READER_CODES["st"]:
                self.issue(IssueLevel.SET, gs06, st02, code, SET_CODES.get(code, "transaction set error"))
        for ele in err_st.elements:
            for _code, text, _bad in ele.errors:
                element = _refdes(text)
                code = {1: "6", 2: "7"}.get(int(ele.ele_pos), "I6")
                reason = f"{SET_CODES[code]}: {ele.name}"
                self.issue(IssueLevel.SET, gs06, st02, code, reason, segment_id=element[:2], element=element)
        for err_seg in err_st.children:
            self._seg(gs06, st02, err_seg)

    def _seg(self, gs06: str, st02: str, err_seg: Any) -> None:
        seg_id = str(err_seg.seg_id or "")
        loop = getattr(err_seg, "map_loop", "") or err_seg.ls_id or ""
        where = {"segment_id": seg_id, "position": int(err_seg.seg_count), "loop_id": loop}
        for code, text, _bad in err_seg.errors:
            fixed = _SEGMENT_CODE_FIXES.get(code, code)
            if fixed not in SEGMENT_CODES:
                fixed = "8"
            reason = SEGMENT_CODES[fixed]
            if code == "3" or fixed in ("4", "5"):
                reason += f": {err_seg.name}" if err_seg.name != "Unknown" else ""
            elif code in _SEGMENT_CODE_ELEMENTS:
                reason += f": {_SEGMENT_CODE_ELEMENTS[code]} is out of sequence"
            elif code == "1":
                reason += " here" if seg_id else " here (the segment has no id)"
            element = _SEGMENT_CODE_ELEMENTS.get(code, "") or (_refdes(text) if fixed == "8" else "")
            self.issue(IssueLevel.SEGMENT, gs06, st02, fixed, reason, element=element, **where)
        for ele in err_seg.elements:
            element = _element_name(seg_id, ele)
            for code, text, _bad in ele.errors:
                fixed = code if code in ELEMENT_CODES else "7" if code.startswith("I") else "6"
                reason = f"{ELEMENT_CODES[fixed]}: {ele.name}{_length_note(text)}"
                self.issue(
                    IssueLevel.ELEMENT,
                    gs06,
                    st02,
                    fixed,
                    reason,
                    element=element,
                    element_ref=ele.ele_ref_num,
                    **where,
                )


# --------------------------------------------------------------------------- verdicts


def _set_verdict(issues: Iterable[X12Issue], validated: bool) -> SetVerdict:
    found = list(issues)
    if found:
        return SetVerdict.REJECTED
    return SetVerdict.ACCEPTED if validated else SetVerdict.NOT_VALIDATED


def _group_verdict(
    sets: Sequence[SetValidation], issues: Sequence[X12Issue], validated: bool
) -> GroupVerdict:
    if issues:
        return GroupVerdict.REJECTED
    verdicts = {s.verdict for s in sets}
    if SetVerdict.REJECTED in verdicts:
        rejected_all = verdicts == {SetVerdict.REJECTED}
        return GroupVerdict.REJECTED if rejected_all else GroupVerdict.PARTIALLY_ACCEPTED
    if not validated:
        return GroupVerdict.NOT_VALIDATED
    return GroupVerdict.ACCEPTED


def _why_not(x: Interchange, group: Group) -> str:
    """Why a group is not validated with a pyx12 map."""
    guide = group.version or "(no GS08)"
    if not guide.startswith("005010"):
        return f"version {guide} not handled (hcsync validates 005010): envelope checked only"
    if x.version != "00501":
        return f"ISA12 {x.version} with GS08 {guide}: no pyx12 control map, envelope checked only"
    return f"no pyx12 map for {guide} (GS01 {group.functional_id}): envelope checked only"


def _declared(group: Group) -> int:
    count = group.ge.element(1) if group.ge is not None else ""
    return int(count) if count.isdigit() else len(group.transactions)


def _set_result(
    group: Group, t: Transaction, issues: list[X12Issue], validated_with: str, validated: bool
) -> SetValidation:
    return SetValidation(
        group_control=group.control,
        control=t.control,
        code=t.code,
        guide=t.st.element(3) or group.version,
        verdict=_set_verdict(issues, validated),
        issues=tuple(issues),
        validated_with=validated_with,
    )


def validate(interchange: Interchange, *, map_path: Path | None = None) -> InterchangeValidation:
    """Validate ``interchange`` with pyx12 (nearest maps by default) into located results.

    Whatever the input, no exception: findings are issues. ``map_path`` is a pyx12 map directory
    (default: maps.nearest_maps() in the system temp directory); building that default raises
    ConfigurationError when it cannot be written or pyx12's maps changed.
    """
    x = interchange
    path = map_path if map_path is not None else maps.nearest_maps()
    choices = {id(g): maps.choose_map(x.version, g.functional_id, g.version, path) for g in x.groups}
    collector = _Collector(x)
    failure: dict[int, str] = {}
    if x.version not in _INTERCHANGE_VERSIONS:
        reason = f"{TA1_CODES['003']}: ISA12 {x.version} (hcsync reads 00401 and 00501)"
        collector.issue(IssueLevel.INTERCHANGE, "", "", "003", reason, segment_id="ISA", element="ISA12")
    mapped = [g for g in x.groups if choices[id(g)] is not None]
    if mapped:
        text = _render(x, mapped)
        if text is None:
            long = next(n for n, w in enumerate(_ISA_WIDTHS, 1) if len(x.isa.element(n)) > w)
            reason = f"ISA{long:02d} is longer than its fixed width of {_ISA_WIDTHS[long - 1]}"
            code = _TA1_FOR_ISA_ELEMENT[long]
            collector.issue(
                IssueLevel.INTERCHANGE, "", "", code, reason, segment_id="ISA", element=f"ISA{long:02d}"
            )
            failure = {id(g): "the ISA cannot be read by pyx12: envelope checked only" for g in mapped}
        else:
            walk = _walk(text, path)
            collector.collect(walk.errh)
            if walk.failure:
                failure = _walk_failed(x, mapped, walk, collector)
    _add_envelope_faults(x, collector)
    for group in x.groups:
        if not (group.functional_id and group.control):
            reason = f"{TA1_CODES['024']}: a GS without GS01 or GS06 cannot be acknowledged in a 999"
            collector.issue(
                IssueLevel.INTERCHANGE, "", "", "024", reason, segment_id="GS", position=group.gs.position
            )
    groups = tuple(_group_result(x, g, choices[id(g)], failure.get(id(g)), collector) for g in x.groups)
    issues = tuple(collector.interchange)
    return InterchangeValidation(
        interchange=x,
        ta1_needed=x.ack_requested or bool(issues),
        ta1_code=min((i.code for i in issues), default=_NO_TA1_ERROR),
        issues=issues,
        groups=groups,
    )


def _walk_failed(x: Interchange, mapped: list[Group], walk: _Walk, collector: _Collector) -> dict[int, str]:
    """Record where pyx12 stopped; the groups it was validating become NOT_VALIDATED with that reason."""
    st02 = walk.failed_st02
    group = next((g for g in mapped if any(t.control == st02 for t in g.transactions)), None)
    gs06 = group.control if group is not None else ""
    reason = f"pyx12 stopped here ({walk.failure}): not validated past this segment"
    level = IssueLevel.SEGMENT if st02 and group is not None else IssueLevel.INTERCHANGE
    collector.issue(
        level,
        gs06 if level is IssueLevel.SEGMENT else "",
        st02 if level is IssueLevel.SEGMENT else "",
        "8" if level is IssueLevel.SEGMENT else "024",
        reason,
        segment_id=walk.failed_segment,
        position=walk.failed_position if level is IssueLevel.SEGMENT else None,
    )
    why = f"pyx12 failed ({walk.failure}): validation incomplete, envelope checked only"
    return {id(g): why for g in mapped}


def _add_envelope_faults(x: Interchange, collector: _Collector) -> None:
    for fault in x.faults:
        gs06 = _control_of(fault, "GS06") or ""
        st02 = _control_of(fault, "ST02") or ""
        found = _envelope_issue(x, fault, gs06, st02)
        if found.level is IssueLevel.INTERCHANGE:
            collector.interchange.append(found)
        elif found.level is IssueLevel.GROUP:
            collector.groups.setdefault(found.gs06, []).append(found)
        else:
            collector.sets.setdefault((found.gs06, found.st02), []).append(found)


def _group_result(
    x: Interchange, group: Group, choice: maps.MapChoice | None, failed: str | None, collector: _Collector
) -> GroupValidation:
    validated = choice is not None and failed is None
    label = choice.label if validated and choice is not None else failed or _why_not(x, group)
    sets = []
    for t in group.transactions:
        issues = collector.sets.pop((group.control, t.control), [])
        sets.append(_set_result(group, t, issues, label, validated))
    issues = collector.groups.pop(group.control, [])
    return GroupValidation(
        control=group.control,
        functional_id=group.functional_id,
        guide=group.version,
        verdict=_group_verdict(sets, issues, validated),
        sets=tuple(sets),
        issues=tuple(issues),
        declared_sets=_declared(group),
        validated_with=label,
    )
