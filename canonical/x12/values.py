"""Values out of x12sdk models into canonical ones: amounts to exact cents, dates, composites, codes.

Every function takes the value x12sdk parsed (a Decimal, a date, a string, or None) and the segment and
element it came from, and raises a located :class:`ReadRefused` when the value cannot be carried
exactly: an amount with fractions of a cent, a date that is no date, a unit count that is not whole.
Amounts are Decimal all the way (x12sdk reads them from the text as Decimal): never a float.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from canonical.x12.locate import At, ReadRefused, SetLocation

__all__ = ["MAPPING_RULE", "cents", "code", "components", "optional_date", "text", "whole"]

MAPPING_RULE = "X12-MAPPING"
_CENTS_PER_DOLLAR = 100
_D8 = "%Y%m%d"
_D8_LENGTH = 8


def text(value: Any) -> str:
    """A string element as text ("" when absent); enums give their value."""
    if value is None:
        return ""
    inner = getattr(value, "value", value)
    return str(inner).strip()


def code(value: Any) -> str:
    """A code element (enum or text) as its X12 code."""
    return text(value)


def components(value: Any, separator: str) -> list[str]:
    """Split a composite x12sdk keeps as one string (``HC:99213:25``) by the interchange's separator."""
    if isinstance(value, list | tuple):
        return [text(part) for part in value]
    return text(value).split(separator) if text(value) else []


def cents(value: Any, where: SetLocation, segment: At, element: str) -> int:
    """Dollars to integer cents, exactly; a value with fractions of a cent or no number is refused."""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(text(value) or "0")
    except InvalidOperation:
        raise where.refuse(MAPPING_RULE, "not a decimal amount", segment, element) from None
    if not amount.is_finite():
        raise where.refuse(MAPPING_RULE, "not a finite amount", segment, element)
    scaled = amount * _CENTS_PER_DOLLAR
    if scaled != scaled.to_integral_value():
        raise where.refuse(MAPPING_RULE, "an amount with fractions of a cent", segment, element)
    return int(scaled)


def optional_cents(value: Any, where: SetLocation, segment: At, element: str) -> int | None:
    """Like :func:`cents`, None when the element is absent."""
    return None if value is None or text(value) == "" else cents(value, where, segment, element)


def whole(value: Any, where: SetLocation, segment: At, element: str) -> int | None:
    """A quantity that must be a whole number (units of service); None when absent."""
    if value is None or text(value) == "":
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(text(value))
    except InvalidOperation:
        raise where.refuse(MAPPING_RULE, "not a number", segment, element) from None
    if not number.is_finite() or number != number.to_integral_value():
        raise where.refuse(
            MAPPING_RULE, "a fractional unit count: hcsync carries whole units", segment, element
        )
    return int(number)


def optional_date(value: Any, where: SetLocation, segment: At, element: str) -> dt.date | None:
    """A CCYYMMDD date (or the date x12sdk already made of it); None when absent; else refused."""
    if value is None or text(value) == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raw = text(value)
    if len(raw) != _D8_LENGTH:
        raise where.refuse(MAPPING_RULE, "not a CCYYMMDD date", segment, element)
    try:
        return dt.datetime.strptime(raw, _D8).date()
    except ValueError:
        raise where.refuse(MAPPING_RULE, "not a valid CCYYMMDD date", segment, element) from None


def period(value: Any, where: SetLocation, segment: At, element: str) -> tuple[dt.date, dt.date] | None:
    """A D8 date (one day) or an RD8 range (``CCYYMMDD-CCYYMMDD``) as (from, to); None when absent."""
    if value is None or text(value) == "":
        return None
    if isinstance(value, dt.date):
        day = optional_date(value, where, segment, element)
        return (day, day) if day is not None else None
    first, _, last = text(value).partition("-")
    start = optional_date(first, where, segment, element)
    end = optional_date(last, where, segment, element) if last else start
    if start is None or end is None:
        raise where.refuse(MAPPING_RULE, "not a date or date range", segment, element)
    return start, end


def refuse_unless(condition: bool, refusal: ReadRefused) -> None:
    """Raise ``refusal`` unless ``condition`` holds (keeps the mappers' checks one line each)."""
    if not condition:
        raise refusal
