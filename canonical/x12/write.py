"""Write X12 5010 interchanges from the canonical models: hcsync's own envelope and the value rules.

hcsync sends 837I/837P claims and 270 inquiries, and its reference payer answers with 271s and 835s. All
of them go out in an envelope hcsync writes itself (ISA/GS/GE/IEA): x12sdk's writer hard-codes GS08 from
its model package (X222A2, X223A3) while pyx12 maps only the guides hcsync adopts (X222A1, X223A2), and
neither takes control numbers as parameters. Everything in an interchange comes from its arguments, never
from the clock or a random source, so the same models and :class:`Envelope` give the same bytes.

Segments are written as text (see docs/x12.md for the measurement against building x12sdk models); the
rules of the guides that protect the file are checked on every value as it is written:

- a value longer than its element's maximum, or an empty required value, is refused;
- a delimiter of the interchange inside a value is refused: it would split the element or segment and
  corrupt every segment after it;
- characters outside ASCII are refused, except letters with diacritics, which are written without them
  (5010's basic and extended character sets have no accented letters, and payers match names that way).

A refusal is an :class:`InvalidMessageError` whose :class:`Fault` names the interchange, group and
transaction (ISA13/GS06/ST02), the segment's position in the set (ST is 1), the segment id, the element
and the loop; never the value, which is often PHI.

The transaction writers are in :mod:`canonical.x12.write_837`, :mod:`canonical.x12.write_835` and
:mod:`canonical.x12.write_eligibility`; this module holds what they share.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from canonical.errors import Fault, InvalidMessageError
from canonical.x12.envelope import Delimiters

__all__ = [
    "DEFAULT_DELIMITERS",
    "Envelope",
    "GroupSpec",
    "Parties",
    "SetWriter",
    "Usage",
    "amount",
    "date8",
    "interchange",
    "time4",
]

DEFAULT_DELIMITERS = Delimiters(element="*", component=":", segment="~", repetition="^")
# What hcsync and its reference payer write: ">" as the component separator (as many senders do), because
# hcsync's account and claim ids are facility:visit and a ":" in CLM01 or CLP01 would split them.
HCSYNC_DELIMITERS = Delimiters(element="*", component=">", segment="~", repetition="^")
_VERSION = "00501"  # ISA12
_ISA_ID_LENGTH = 15  # ISA06 and ISA08 are fixed-width, padded with spaces
_GS_ID_MAX = 15  # GS02, GS03
_ISA_AUTH_BLANK = " " * 10  # ISA02 and ISA04: no authorization or security information
_MAX_ISA13 = 999_999_999
_MAX_GS06 = 999_999_999
_MAX_ST02 = 999_999_999
_ST02_MIN_DIGITS = 4  # ST02 is AN 4/9: zero-padded to at least 4
_MAX_AMOUNT_DIGITS = 18  # type R amounts: 1-18 digits, sign and decimal point not counted
_ELEMENT_NAME = re.compile(r"^(?P<segment>[A-Z][A-Z0-9]{1,2}?)(?P<element>\d{2})(?:-(?P<component>\d+))?$")
_PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))


class Usage(StrEnum):
    """ISA15 usage indicator."""

    PRODUCTION = "P"
    TEST = "T"


@dataclass(frozen=True, slots=True)
class Parties:
    """Who an interchange is from and to: ISA05-08, GS02-03 and the 837's submitter and receiver loops.

    The names and contact are needed only by transactions that carry them (an 837's loops 1000A/1000B);
    an empty one there is refused when the 837 is written.
    """

    sender_qualifier: str  # ISA05: ZZ mutually defined, 30 federal tax id, 01 DUNS...
    sender_id: str  # ISA06, at most 15 characters
    receiver_qualifier: str  # ISA07
    receiver_id: str  # ISA08
    sender_code: str  # GS02 application sender's code, 2-15 characters
    receiver_code: str  # GS03 application receiver's code
    sender_name: str = ""  # 837 loop 1000A NM103 submitter name
    receiver_name: str = ""  # 837 loop 1000B NM103 receiver name
    contact_name: str = ""  # 837 loop 1000A PER02 submitter contact
    contact_phone: str = ""  # 837 loop 1000A PER04 (PER03 = TE), digits only


@dataclass(frozen=True, slots=True)
class Envelope:
    """Everything an interchange's envelope says that is not in the models: parties, numbers, time.

    ``group_control`` is the GS06 of the first functional group and ``transaction_control`` the ST02 of
    the first transaction set; the ones after it count up by one. The caller takes them from its own
    sequence, so a resend can reuse them and two runs write the same bytes.
    """

    parties: Parties
    interchange_control: int  # ISA13 and IEA02, 1..999999999
    group_control: int  # GS06 of the first group
    at: dt.datetime  # ISA09/ISA10, GS04/GS05, BHT04/BHT05
    transaction_control: int = 1  # ST02 of the first set
    usage: Usage = Usage.PRODUCTION  # ISA15
    ack_requested: bool = False  # ISA14: ask the receiver for a TA1
    delimiters: Delimiters = DEFAULT_DELIMITERS
    line_break: bool = False  # a newline after each segment terminator (for people reading the file)

    def __post_init__(self) -> None:
        _check_delimiters(self.delimiters)
        if self.line_break and self.delimiters.segment == "\n":
            raise _envelope_error("line_break", "the segment terminator is already a newline")
        for name, number, top in (
            ("interchange_control (ISA13)", self.interchange_control, _MAX_ISA13),
            ("group_control (GS06)", self.group_control, _MAX_GS06),
            ("transaction_control (ST02)", self.transaction_control, _MAX_ST02),
        ):
            if not 1 <= number <= top:
                raise _envelope_error(name, f"must be between 1 and {top}, not {number}")


def _envelope_error(field_name: str, reason: str) -> InvalidMessageError:
    return InvalidMessageError(
        Fault(rule="X12-WRITE-ENVELOPE", reason=reason, segment="ISA", field=field_name)
    )


def _check_delimiters(delimiters: Delimiters) -> None:
    """Four distinct single characters, none a letter, a digit or a space (X12.6 delimiter rules)."""
    chosen = [delimiters.element, delimiters.component, delimiters.segment, delimiters.repetition or ""]
    names = ["element", "component", "segment", "repetition"]
    for name, char in zip(names, chosen, strict=True):
        if len(char) != 1 or char.isalnum() or char == " ":
            raise _envelope_error(f"delimiters.{name}", "must be one character, not a letter, digit or space")
    if len(set(chosen)) != len(chosen):
        raise _envelope_error("delimiters", "the four delimiters must differ")


# --------------------------------------------------------------------------------------------------
# Values


def amount(cents: int) -> str:
    """Integer cents as an X12 decimal (type R): 12345 -> ``123.45``, 12300 -> ``123``, -50 -> ``-0.5``.

    Trailing zeros after the decimal point and a point with nothing after it are left out, as X12.6
    asks for type R; the value is exact because it never goes through a float.
    """
    sign = "-" if cents < 0 else ""
    whole, fraction = divmod(abs(cents), 100)
    text = f"{sign}{whole}"
    if fraction:
        text += f".{fraction:02d}".rstrip("0")
    return text


def date8(day: dt.date) -> str:
    """A date as CCYYMMDD (format qualifier D8)."""
    return day.strftime("%Y%m%d")


def time4(moment: dt.datetime) -> str:
    """A time as HHMM."""
    return moment.strftime("%H%M")


# --------------------------------------------------------------------------------------------------
# Transaction sets


Element = str | tuple[str, ...]  # a simple element, or a composite's components


@dataclass(slots=True)
class SetWriter:
    """Collects one transaction set's segments (ST first) and checks every value written into it.

    ``loop`` is the loop being written, set by the transaction writer as it goes; refusals name it,
    since the same element (NM103) means different things in different loops.
    """

    delimiters: Delimiters
    where: str  # ISA13/GS06/ST02, for refusals
    control: str  # ST02
    code: str  # ST01
    guide: str  # ST03 ("" for the 835, where pyx12's map has ST03 "not used")
    loop: str = "header"
    segments: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.add("ST", self.code, self.control, self.guide)

    def add(self, segment_id: str, *elements: Element) -> None:
        """Append a segment; trailing empty elements and components are left out, as X12.6 requires."""
        d = self.delimiters
        texts = [d.component.join(e).rstrip(d.component) if isinstance(e, tuple) else e for e in elements]
        while texts and not texts[-1]:
            texts.pop()
        self.segments.append(d.element.join([segment_id, *texts]))

    def close(self) -> list[str]:
        """Append SE (SE01 counts ST to SE) and return the set's segments."""
        self.add("SE", str(len(self.segments) + 1), self.control)
        return self.segments

    def refuse(self, element: str, reason: str) -> InvalidMessageError:
        """An error naming where the segment being written sits, its element and the reason."""
        match = _ELEMENT_NAME.match(element)
        return InvalidMessageError(
            Fault(
                rule="X12-WRITE-VALUE",
                reason=f"loop {self.loop}: {reason}",
                message_id=self.where,
                segment=match.group("segment") if match else element,
                field=element,
                position=len(self.segments) + 1,
            )
        )

    def text(self, value: str, element: str, max_length: int, *, required: bool = True) -> str:
        """Check one value for ``element`` (``NM103``, ``SV101-2``) of the segment about to be added."""
        value = value.strip()
        if not value:
            if required:
                raise self.refuse(element, f"{element} is required and the value is empty")
            return ""
        if not value.isascii():
            value = _without_diacritics(value)
            if not value.isascii():
                raise self.refuse(element, f"{element} has characters outside ASCII that X12 cannot carry")
        if any(char not in _PRINTABLE_ASCII for char in value):
            raise self.refuse(element, f"{element} has a control character")
        clash = [name for name, char in self._delimiters() if char in value]
        if clash:
            raise self.refuse(
                element, f"{element} contains the interchange's {' and '.join(clash)} delimiter"
            )
        if len(value) > max_length:
            raise self.refuse(
                element, f"{element} is {len(value)} characters long; the guide allows {max_length}"
            )
        return value

    def money(self, cents: int, element: str) -> str:
        """An amount in cents as the element's decimal, refused beyond 18 digits."""
        text = amount(cents)
        if sum(char.isdigit() for char in text) > _MAX_AMOUNT_DIGITS:
            raise self.refuse(element, f"{element} has more than {_MAX_AMOUNT_DIGITS} digits")
        return text

    def repeated(self, values: Iterable[str], element: str, max_length: int) -> str:
        """Values of a repeating element (EQ01, EB03) joined by the repetition separator."""
        separator = self.delimiters.repetition or ""
        return separator.join(self.text(value, element, max_length) for value in values)

    def _delimiters(self) -> list[tuple[str, str]]:
        d = self.delimiters
        found = [("element", d.element), ("component", d.component), ("segment", d.segment)]
        return found + ([("repetition", d.repetition)] if d.repetition else [])


def _without_diacritics(value: str) -> str:
    """``Müller`` -> ``Muller``: decompose, then drop the combining marks."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


# --------------------------------------------------------------------------------------------------
# Interchanges


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """One functional group to write: GS01, GS08 (the guide) and how to write each of its sets."""

    functional_id: str  # GS01: HC claims, HP remittance, HS 270, HB 271
    guide: str  # GS08
    sets: Sequence[Callable[[SetWriter], None]]
    set_code: str  # ST01
    st03: bool = True  # whether ST03 repeats GS08 (not in the 835, where pyx12's map has it unused)


def interchange(envelope: Envelope, groups: Sequence[GroupSpec]) -> bytes:
    """Write one interchange: ISA, a GS..GE per group with its sets numbered in order, IEA.

    ST02 counts up from ``envelope.transaction_control`` across the whole interchange, so a set's
    ST02 is unique within it, as a 999's AK2 needs to tell them apart.
    """
    d = envelope.delimiters
    isa13 = f"{envelope.interchange_control:09d}"
    segments = [_isa(envelope, isa13)]
    if not any(group.sets for group in groups):
        raise _envelope_error("ISA13", "there is nothing to write: no transaction set")
    parties = envelope.parties
    st02 = envelope.transaction_control
    for offset, group in enumerate(groups):
        gs06 = str(envelope.group_control + offset)
        if int(gs06) > _MAX_GS06:
            raise _envelope_error("group_control (GS06)", f"group {offset + 1} would pass {_MAX_GS06}")
        segments.append(
            d.element.join(
                [
                    "GS",
                    group.functional_id,
                    _header_value(parties.sender_code, "GS02", _GS_ID_MAX, d),
                    _header_value(parties.receiver_code, "GS03", _GS_ID_MAX, d),
                    envelope.at.strftime("%Y%m%d"),
                    time4(envelope.at),
                    gs06,
                    "X",
                    group.guide,
                ]
            )
        )
        for write in group.sets:
            if st02 > _MAX_ST02:
                raise _envelope_error("transaction_control (ST02)", f"the sets would pass {_MAX_ST02}")
            control = f"{st02:0{_ST02_MIN_DIGITS}d}"
            writer = SetWriter(
                d, f"{isa13}/{gs06}/{control}", control, group.set_code, group.guide if group.st03 else ""
            )
            write(writer)
            segments.extend(writer.close())
            st02 += 1
        segments.append(d.element.join(["GE", str(len(group.sets)), gs06]))
    segments.append(d.element.join(["IEA", str(len(groups)), isa13]))
    end = d.segment + ("\n" if envelope.line_break else "")
    return (end.join(segments) + end).encode("ascii")


def _header_value(value: str, element: str, max_length: int, delimiters: Delimiters) -> str:
    """An envelope id (ISA06, GS02...): printable ASCII, no delimiter, within its length."""
    value = value.strip()
    if not value or not value.isascii() or len(value) > max_length or not value.isprintable():
        raise _envelope_error(element, f"must be 1-{max_length} printable ASCII characters")
    d = delimiters
    if any(char in value for char in (d.element, d.component, d.segment, d.repetition or "")):
        raise _envelope_error(element, "contains a delimiter of the interchange")
    return value


def _isa(envelope: Envelope, isa13: str) -> str:
    """The fixed-width ISA: ids padded to 15, the delimiters declared in ISA11 and ISA16."""
    p, d = envelope.parties, envelope.delimiters
    for value, element in ((p.sender_qualifier, "ISA05"), (p.receiver_qualifier, "ISA07")):
        if len(value) != 2 or not value.isalnum():
            raise _envelope_error(element, "must be a 2-character id qualifier")
    sender = _header_value(p.sender_id, "ISA06", _ISA_ID_LENGTH, d)
    receiver = _header_value(p.receiver_id, "ISA08", _ISA_ID_LENGTH, d)
    return d.element.join(
        [
            "ISA",
            "00",
            _ISA_AUTH_BLANK,
            "00",
            _ISA_AUTH_BLANK,
            p.sender_qualifier,
            sender.ljust(_ISA_ID_LENGTH),
            p.receiver_qualifier,
            receiver.ljust(_ISA_ID_LENGTH),
            envelope.at.strftime("%y%m%d"),
            time4(envelope.at),
            d.repetition or "^",
            _VERSION,
            isa13,
            "1" if envelope.ack_requested else "0",
            envelope.usage.value,
            d.component,
        ]
    )
