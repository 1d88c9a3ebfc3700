"""Located reads of one HL7 v2 message: every conversion failure becomes a Fault that says where.

The mappers (canonical.hl7v2.mapping and the modules beside it) read fields through a :class:`Reader`, so a
missing segment, an empty required field or a malformed value is refused with the rule, the segment, the
field, the segment's position in the message and the value found.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TypeVar

from canonical.errors import Fault, InvalidMessageError
from canonical.hl7v2.datatypes import parse_dtm
from canonical.hl7v2.parser import Hl7Message, Segment
from canonical.models import ActionCode

T = TypeVar("T")

# The largest quantity or amount (either side of zero) a mapper accepts in an FT1, RXE or RXA.
MAX_QUANTITY = 1_000_000
# The largest set id or priority (DG1-1, DG1-15, PR1-1, PR1-14) a mapper accepts: HL7 gives a set id four
# digits and a priority two; the bound keeps them far inside the int64 the billing requests carry.
MAX_ORDINAL = 1_000_000
# An HL7 NM integer: ASCII digits with an optional sign (int() would also read "1_000" and other scripts'
# digits).
_INTEGER = re.compile(r"[+-]?[0-9]+")


class Reader:
    """Read fields of one message, turning every conversion failure into a located fault."""

    def __init__(self, msg: Hl7Message, default_tz: dt.tzinfo) -> None:
        self.msg = msg
        self.tz = default_tz
        self.control_id = msg.control_id

    def fault(
        self, seg: Segment | None, name: str, field: str, rule: str, reason: str, found: str = ""
    ) -> Fault:
        return Fault(
            rule=rule,
            reason=reason,
            message_id=self.control_id,
            segment=name,
            field=field,
            position=seg.index if seg is not None else None,
            found=found,
        )

    def require_segment(self, name: str) -> Segment:
        seg = self.msg.segment(name)
        if seg is None:
            raise InvalidMessageError(
                self.fault(None, name, "", f"HL7-{name}-MISSING", f"{name} segment is required")
            )
        return seg

    def convert(self, seg: Segment, field: str, raw: str, parse: Callable[[str], T], rule: str) -> T:
        try:
            return parse(raw)
        except ValueError as exc:
            raise InvalidMessageError(self.fault(seg, seg.name, field, rule, str(exc), raw)) from None

    def dtm(self, seg: Segment, number: int) -> dt.datetime | None:
        raw = seg.get(number)
        return self.convert(seg, f"{seg.name}-{number}", raw, lambda v: parse_dtm(v, self.tz), "HL7-DTM")

    def action(self, seg: Segment, number: int, rule: str) -> ActionCode | None:
        """Return an action code field (HL7 table 0206: A, D, U, X), None when it is empty."""
        return self.convert(seg, f"{seg.name}-{number}", seg.get(number).strip(), _action_code, rule)


def _action_code(value: str) -> ActionCode | None:
    if not value:
        return None
    try:
        return ActionCode(value)
    except ValueError:
        raise ValueError("action code is not in HL7 table 0206 (A, D, U, X)") from None


def groups(msg: Hl7Message, starts: str) -> list[list[Segment]]:
    """Split the segments after the first ``starts`` segment into groups, each beginning with one."""
    found: list[list[Segment]] = []
    for seg in msg.segments:
        if seg.name == starts:
            found.append([seg])
        elif found:
            found[-1].append(seg)
    return found


def whole_number(value: str) -> int:
    """Return a quantity with no fractional part, at most MAX_QUANTITY either side of zero."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"quantity must be a whole number: {value!r}")
    if abs(number) > MAX_QUANTITY:
        raise ValueError(f"quantity out of range: {value!r}")
    return int(number)


def decimal_milli(value: str) -> int:
    """Return a non-negative decimal amount in thousandths, rounded half up."""
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"amount must be a non-negative number: {value!r}")
    if number > MAX_QUANTITY:
        raise ValueError(f"amount out of range: {value!r}")
    return int((number * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def decimal_text(value: str) -> str:
    """Return a decimal string as sent, or raise ValueError when it is not a number."""
    if value:
        decimal_milli(value)
    return value


def bounded_int(value: str) -> int:
    """Return a set id or priority: an integer at most MAX_ORDINAL either side of zero."""
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"not a whole number: {value!r}")
    number = int(text)
    if abs(number) > MAX_ORDINAL:
        raise ValueError(f"number out of range (at most {MAX_ORDINAL}): {value!r}")
    return number


def optional_int(value: str) -> int | None:
    """Return a set id or priority field (see :func:`bounded_int`), None when it is empty."""
    return bounded_int(value) if value.strip() else None


__all__ = [
    "MAX_ORDINAL",
    "MAX_QUANTITY",
    "Reader",
    "bounded_int",
    "decimal_milli",
    "decimal_text",
    "groups",
    "optional_int",
    "whole_number",
]
