"""HL7 v2 primitive data types as hcsync reads them: DTM/TS, DT and money."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

# Bounds that keep every value representable downstream (int64 cents, protobuf timestamps).
MAX_CENTS = 10**13  # 100 billion in major units: far above any real charge, far below 2**63
MIN_YEAR, MAX_YEAR = 1800, 2200


def _check_year(year: int, value: str) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"year {year} outside {MIN_YEAR}-{MAX_YEAR}: {value!r}")


def parse_dtm(value: str, default_tz: dt.tzinfo = dt.UTC) -> dt.datetime | None:
    """Parse an HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]) into an aware datetime.

    Returns None for an empty value and raises ValueError for anything that is not a DTM.
    """
    value = value.strip()
    if not value:
        return None
    tz: dt.tzinfo = default_tz
    for sign in ("+", "-"):
        cut = value.find(sign, 4)
        if cut != -1:
            offset = value[cut + 1 :]
            if len(offset) != 4 or not offset.isdigit():
                raise ValueError(f"bad time zone offset {value[cut:]!r}")
            minutes = int(offset[:2]) * 60 + int(offset[2:])
            tz = dt.timezone(dt.timedelta(minutes=minutes if sign == "+" else -minutes))
            value = value[:cut]
            break
    fraction = ""
    if "." in value:
        value, fraction = value.split(".", 1)
    if not value.isdigit() or len(value) not in (4, 6, 8, 10, 12, 14):
        raise ValueError(f"not an HL7 date/time: {value!r}")
    micro = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
    _check_year(int(value[0:4]), value)
    return dt.datetime(
        int(value[0:4]),
        int(value[4:6] or 1),
        int(value[6:8] or 1),
        int(value[8:10] or 0),
        int(value[10:12] or 0),
        int(value[12:14] or 0),
        micro,
        tzinfo=tz,
    )


def parse_dt(value: str) -> dt.date | None:
    """Parse an HL7 DT (YYYY[MM[DD]]) or the date part of a DTM; None when empty."""
    value = value.strip()[:8]
    if not value:
        return None
    if not value.isdigit() or len(value) not in (4, 6, 8):
        raise ValueError(f"not an HL7 date: {value!r}")
    _check_year(int(value[0:4]), value)
    return dt.date(int(value[0:4]), int(value[4:6] or 1), int(value[6:8] or 1))


def parse_cents(value: str) -> int | None:
    """Parse an HL7 money/NM amount ("125.5", "-3", "1,234.00" is refused) into cents; None when empty."""
    value = value.strip()
    if not value:
        return None
    try:
        amount = Decimal(value)
        if not amount.is_finite():
            raise ValueError(f"not a finite amount: {value!r}")
        cents = amount * 100
        if abs(cents) > MAX_CENTS:
            raise ValueError(f"amount out of range: {value!r}")
        if cents != cents.to_integral_value():
            raise ValueError(f"more than two decimals: {value!r}")
    except ArithmeticError:  # InvalidOperation, Overflow: not a usable number
        raise ValueError(f"not a number: {value!r}") from None
    return int(cents)
