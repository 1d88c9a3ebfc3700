"""Read the transaction sets of an X12 interchange into canonical models, one :class:`SetReading` per set.

What each set becomes (issue 14):

- 837P (005010X222, A1, A2) and 837I (005010X223, A1-A3): a ClaimSubmission per claim;
- 835 (005010X221, A1): one Remittance;
- 270 / 271 (005010X279, A1): an EligibilityInquiry / EligibilityResponse per person asked about;
- 999, 997 and TA1: acknowledgments, reported as such and not mapped here (their reader answers claims);
- anything else (004010, 834, 276/277, 278, 275, 820, dental 837...): "not handled", naming the set and
  its guide. Never an exception: every failure of x12sdk or of a canonical rule is a located error.

**Why x12sdk's parser is fed segments, not text.** ``X12ModelReader`` is x12sdk's text splitter in
front of its per-guide ``X12Parser``, and the splitter is where its known failures are (a byte-order
mark, a newline terminator, blank space after the last terminator, several interchanges with different
delimiters: docs/x12-research.md section 5). envelope.py has already split each interchange with its own
delimiters, so each set's segments go straight to the parser ``X12ModelReader`` would build
(``create_parser``, with the interchange's delimiters): the same models, none of the splitter's faults,
and one set's failure cannot stop the next set's reading.

**Three x12sdk 2.2.0 faults worked around** by giving its parser fewer segments (SE01 lowered to match)
or elements, and reading those from envelope.py's:

- an 835's footer holds one PLB (``footer.plb_segment`` is not a list), so its model refuses a valid
  835 with two. The parser gets the first PLB only, and every PLB is read through x12sdk's own PLB
  segment model (``SEGMENT_LOOKUP["PLB"]``), so each is still checked the x12sdk way;
- a 271's loops 2100C and 2100D check AAA03 against loop 2100B's code list (its comment says they are
  identical; X279A1 says otherwise), so the commonest rejections of a subscriber (72 invalid member id,
  73 invalid name, 75 subscriber not found) are refused. The parser gets no AAA of a 271, and the
  rejection is read from the AAA segments of the member's loops and above (mapping.py, ``map_271``);
- an 837's DMG03 may be U (unknown) in 5010, but x12sdk's model takes only F and M: a DMG03 U is not
  given to the parser, and the person reads as gender unknown.

Errors name ISA13, GS06, ST02, the segment id, its position in the set (ST is 1) and the element, as
:class:`~canonical.errors.Fault` s; their reasons carry no PHI (see locate.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from x12sdk.models import X12Delimiters
from x12sdk.parsing import X12ParseException, create_parser
from x12sdk.v5010.segments import SEGMENT_LOOKUP

from canonical.errors import Fault
from canonical.models import CanonicalModel
from canonical.revenue_cycle import ClaimType
from canonical.x12.balance import check_835, check_837
from canonical.x12.envelope import Group, Interchange, Segment, Transaction, read_interchanges
from canonical.x12.locate import ReadRefused, SetLocation
from canonical.x12.mapping import MAPPING_RULE, map_270, map_271, map_835, map_837

__all__ = ["ReadStatus", "SetReading", "read_file", "read_interchange"]

STRUCTURE_RULE = "X12-STRUCTURE"  # x12sdk's model of the guide refuses the set
READER_RULE = "X12-READER"  # a library failed in a way it should not have; located as far as known
ENVELOPE_RULE = "X12-ENVELOPE"
_ACKNOWLEDGMENTS = frozenset({"999", "997", "TA1"})
_PROFESSIONAL = frozenset({"005010X222", "005010X222A1", "005010X222A2"})
_INSTITUTIONAL = frozenset({"005010X223", "005010X223A1", "005010X223A2", "005010X223A3"})
_REMITTANCE = frozenset({"005010X221", "005010X221A1"})
_ELIGIBILITY = frozenset({"005010X279", "005010X279A1"})
_GUIDES = {"835": _REMITTANCE, "270": _ELIGIBILITY, "271": _ELIGIBILITY}  # and 837: _claim_type
_MAPPED_VERSION = "005010"
# What hcsync calls the sets it does not handle, for the "not handled" note.
_SET_NAMES = {
    "834": "enrollment",
    "276": "claim status inquiry",
    "277": "claim status response",
    "278": "services review",
    "275": "patient information",
    "820": "premium payment",
    "837": "this claim guide (hcsync reads 837P X222 and 837I X223)",
    "835": "this remittance guide (hcsync reads X221A1)",
    "270": "this eligibility guide (hcsync reads X279A1)",
    "271": "this eligibility guide (hcsync reads X279A1)",
}
# Errors reported per set at most: a set with thousands of bad claims says so in its first ones.
_MAX_ERRORS = 50
# x12sdk needs a repetition separator; one that occurs in no X12 text stands in when ISA11 declares none.
_NO_REPETITION = "\x1f"


class ReadStatus(StrEnum):
    """What became of a transaction set."""

    MAPPED = "mapped"
    ACKNOWLEDGMENT = "acknowledgment"
    NOT_HANDLED = "not_handled"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SetReading:
    """One transaction set (or a TA1) and what reading it gave: models, a note, or located errors.

    ``models`` is empty unless the status is mapped: a set maps whole or not at all, as a 999 accepts or
    rejects a set whole. ``errors`` lists every fault found (at most 50).
    """

    isa13: str
    gs06: str
    st02: str
    st01: str
    guide: str
    status: ReadStatus
    models: tuple[CanonicalModel, ...] = ()
    errors: tuple[Fault, ...] = ()
    note: str = ""

    @property
    def error(self) -> Fault | None:
        """The first error, or None."""
        return self.errors[0] if self.errors else None

    def describe(self) -> str:
        """One line naming the set and its outcome (no PHI): ``ISA13 1, GS06 2, ST02 3 (837 ...): mapped``."""
        name = (
            f"ISA13 {self.isa13}, GS06 {self.gs06 or '-'}, ST02 {self.st02 or '-'} ({self.st01} {self.guide})"
        )
        if self.status is ReadStatus.MAPPED:
            kinds = sorted({type(model).__name__ for model in self.models})
            return f"{name}: mapped, {len(self.models)} {'/'.join(kinds) or 'model'}"
        if self.status is ReadStatus.ERROR:
            return f"{name}: {len(self.errors)} error(s)"
        return f"{name}: {self.status.value}: {self.note}"


def read_file(data: bytes, source: str = "") -> tuple[SetReading, ...]:
    """Read every interchange of ``data`` (envelope.py's :func:`read_interchanges`) and every set in it.

    Raises :class:`~canonical.errors.DecodeError` when the data holds no readable ISA.
    """
    return tuple(
        reading
        for interchange in read_interchanges(data, source)
        for reading in read_interchange(interchange, source)
    )


def read_interchange(interchange: Interchange, source: str = "") -> tuple[SetReading, ...]:
    """Read every transaction set of ``interchange`` (and each TA1 it carries) into a :class:`SetReading`."""
    readings = [
        SetReading(
            interchange.control,
            "",
            "",
            "TA1",
            interchange.version,
            ReadStatus.ACKNOWLEDGMENT,
            note="an interchange acknowledgment: read by the acknowledgment reader, not mapped",
        )
        for segment in interchange.loose
        if segment.id == "TA1"
    ]
    for group in interchange.groups:
        for transaction in group.transactions:
            readings.append(_read_set(interchange, group, transaction, source))
    return tuple(readings)


def _read_set(interchange: Interchange, group: Group, transaction: Transaction, source: str) -> SetReading:
    guide = group.version or transaction.st.element(3)
    base = (interchange.control, group.control, transaction.control, transaction.code, guide)
    if transaction.code in _ACKNOWLEDGMENTS:
        note = "an acknowledgment: read by the acknowledgment reader, not mapped"
        return SetReading(*base, ReadStatus.ACKNOWLEDGMENT, note=note)
    claim_type = _claim_type(transaction.code, guide)
    handled = claim_type is not None or guide in _GUIDES.get(transaction.code, frozenset())
    if not handled:
        return SetReading(
            *base, ReadStatus.NOT_HANDLED, note=_not_handled(transaction.code, guide, interchange)
        )
    where = SetLocation.of(interchange, group.control, transaction, source)
    try:
        models, faults = _map(where, transaction, guide, interchange, claim_type)
    except ReadRefused as exc:
        models, faults = [], [exc.fault]
    except Exception as exc:  # never a crash: any library failure becomes a located error
        reason = f"reading the set failed ({type(exc).__name__}); this is a defect to report"
        models, faults = [], [where.fault(READER_RULE, reason, transaction.st)]
    if not faults and not models:
        faults = [where.fault(MAPPING_RULE, "the set holds nothing to map", transaction.st)]
    if faults:
        return SetReading(*base, ReadStatus.ERROR, errors=tuple(faults[:_MAX_ERRORS]))
    return SetReading(*base, ReadStatus.MAPPED, models=tuple(models))


def _claim_type(code: str, guide: str) -> ClaimType | None:
    if code != "837":
        return None
    if guide in _PROFESSIONAL:
        return ClaimType.PROFESSIONAL
    return ClaimType.INSTITUTIONAL if guide in _INSTITUTIONAL else None


def _not_handled(code: str, guide: str, interchange: Interchange) -> str:
    if not guide.startswith(_MAPPED_VERSION):
        return (
            f"{code} {guide or '(no guide)'}: version {guide[:6] or '?'} is not handled by hcsync "
            f"(ISA12 {interchange.version}); hcsync reads 005010"
        )
    what = _SET_NAMES.get(code, f"transaction set {code}")
    return f"{code} {guide}: {what} is not handled by hcsync"


def _map(
    where: SetLocation,
    transaction: Transaction,
    guide: str,
    interchange: Interchange,
    claim_type: ClaimType | None,
) -> tuple[Sequence[CanonicalModel], list[Fault]]:
    if transaction.segments[-1].id != "SE":
        raise where.refuse(ENVELOPE_RULE, "the set has no SE: it is cut short", transaction.segments[-1])
    if claim_type is not None:
        professional = claim_type is ClaimType.PROFESSIONAL
        balance = check_837(where, "SV1" if professional else "SV2", 2 if professional else 3)
    else:
        balance = check_835(where) if transaction.code == "835" else []
    if balance:
        return [], balance
    plbs = [segment for segment in transaction.segments if segment.id == "PLB"]
    dropped = [plb.position for plb in plbs[1:]]
    if transaction.code == "271":
        dropped += [segment.position for segment in transaction.segments if segment.id == "AAA"]
    fed = _without(transaction.segments, set(dropped))
    if claim_type is not None:
        fed = [_without_unknown_gender(segment) for segment in fed]
    model = _x12sdk_model(where, fed, transaction.code, guide, interchange)
    if claim_type is not None:
        return map_837(model, where, claim_type)
    if transaction.code == "835":
        return map_835(model, where, [_plb_model(where, plb) for plb in plbs])
    if transaction.code == "270":
        return map_270(model, where)
    return map_271(model, where)


def _without_unknown_gender(segment: Segment) -> Segment:
    """An 837 DMG with DMG03 U (unknown), without it: the guide allows U, x12sdk's model only F and M.

    Read without DMG03, the person maps to gender unknown, which is what U says.
    """
    if segment.id == "DMG" and segment.element(3) == "U" and len(segment.elements) == 3:
        return Segment(segment.id, segment.elements[:2], segment.position)
    return segment


def _without(segments: list[Segment], dropped: set[int]) -> list[Segment]:
    """The set without the segments at ``dropped`` positions, SE01 lowered by as many."""
    if not dropped:
        return segments
    kept = [segment for segment in segments if segment.position not in dropped]
    se = kept[-1]
    if se.id == "SE" and se.element(1).isdigit():
        lowered = str(int(se.element(1)) - (len(segments) - len(kept)))
        kept[-1] = Segment(se.id, (lowered, *se.elements[1:]), se.position)
    return kept


def _plb_model(where: SetLocation, plb: Segment) -> Any:
    """One PLB through x12sdk's PLB segment model, as its parser would build it (elements by position)."""
    model = SEGMENT_LOOKUP["PLB"]
    names = [name for name in model.model_fields if name != "delimiters"]
    if len(plb.elements) >= len(names):
        raise where.refuse(STRUCTURE_RULE, "more elements than PLB has", plb, f"PLB{len(names):02d}")
    values = {names[0]: plb.id} | {
        name: value or None for name, value in zip(names[1:], plb.elements, strict=False)
    }
    try:
        return model(**values)
    except ValidationError as exc:
        raise _validation_refusal(exc, where) from None


def _x12sdk_model(
    where: SetLocation, segments: list[Segment], code: str, guide: str, interchange: Interchange
) -> Any:
    """Feed the set's segments to x12sdk's parser for ``guide``; return its transaction model."""
    delimiters = interchange.delimiters
    parser = create_parser(
        code,
        guide,
        X12Delimiters(
            element_separator=delimiters.element,
            repetition_separator=delimiters.repetition or _NO_REPETITION,
            segment_terminator=delimiters.segment,
            component_separator=delimiters.component,
        ),
    )
    model: Any = None
    for segment in segments:
        name = segment.id.upper()
        if name not in SEGMENT_LOOKUP:  # asked first: x12sdk logs a traceback for it before raising
            raise where.refuse(STRUCTURE_RULE, f"segment {segment.id} is not in {guide}", segment)
        try:
            built = parser.parse(name, [name, *segment.elements])
        except ValidationError as exc:
            raise _validation_refusal(exc, where) from None
        except X12ParseException:
            raise where.refuse(
                STRUCTURE_RULE, f"more elements than {segment.id} has in {guide}", segment
            ) from None
        except KeyError:
            raise where.refuse(STRUCTURE_RULE, f"segment {segment.id} is not in {guide}", segment) from None
        except Exception as exc:  # x12sdk's loop parsers fail on segments out of place
            raise where.refuse(
                STRUCTURE_RULE, f"x12sdk cannot place the segment in {guide} ({type(exc).__name__})", segment
            ) from None
        if built is not None:
            model = built
    if model is None:
        raise where.refuse(STRUCTURE_RULE, "x12sdk built no model of the set", segments[0])
    return model


def _validation_refusal(exc: ValidationError, where: SetLocation) -> ReadRefused:
    """x12sdk's pydantic refusal as a located fault: the segment and element from the error's loop path,
    the position from the segment holding the refused value (or the only one with that id)."""
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    path = ".".join(loc)
    keys = [index for index, part in enumerate(loc) if part.endswith("_segment")]
    if not keys:
        reason = f"{path or 'the set'}: {where.redact(first['msg'])}"
        if "SE segment count" in first["msg"]:  # x12sdk's count check names no segment: it is SE01's
            return where.refuse(STRUCTURE_RULE, reason, where.nth("SE", 0), "SE01")
        loops = [part for part in loc if part.startswith("loop_")]
        if loops:  # a loop missing or refused as a whole: named as the guide names it (loop 2010AA)
            fault = where.fault(
                STRUCTURE_RULE, reason, None, f"loop {loops[-1].removeprefix('loop_').upper()}"
            )
            return ReadRefused(fault)
        return where.refuse(STRUCTURE_RULE, reason, where.transaction.st)
    key = keys[-1]
    segment_id = loc[key].removesuffix("_segment").upper()
    element = ""
    number = 0
    model = SEGMENT_LOOKUP.get(segment_id)
    field_name = next((part for part in loc[key + 1 :] if not part.isdigit()), "")
    if model is not None and field_name:
        names = [name for name in model.model_fields if name != "delimiters"]
        if field_name in names:
            number = names.index(field_name)
            element = f"{segment_id}{number:02d}"
    value = first.get("input")
    located: Segment | None = None
    if number and isinstance(value, str):
        located = where.holding(segment_id, number, value)
    elif where.count(segment_id) == 1:
        located = where.nth(segment_id, 0)
    reason = f"{path}: {where.redact(first['msg'])}"
    fault = where.fault(STRUCTURE_RULE, reason, located, element)
    if located is None:  # name the segment even when its position is not known
        fault = Fault(fault.rule, fault.reason, fault.message_id, segment_id, element, None)
    return ReadRefused(fault)
