"""The amount and size bounds both adapters enforce, so no total they keep can overflow.

Every total is a SUM over an int64 column, reported in an int64 field. The bounds are set from real
hospital magnitudes with a wide margin, not from what the types can hold:

* one line (a charge, a journal line, a stock movement's value) is at most 10^9 currency units
  (10^11 cents). The costliest single items billed today, gene therapies, are a few 10^6 units;
* one call carries at most 10^11 currency units (10^13 cents) in absolute value, more than the yearly
  revenue of the largest health systems, and at most 10,000 lines or items;
* a quantity is at most 10^6 units (10^9 thousandths for stock), a unit price or cost at most the line
  bound.

With them, reaching 2^63 cents takes more than 92,000 calls at the per-call bound, each beyond any real
one. The totals are computed without overflow anyway (foundation.sql.total), because rows written before
the bounds existed may hold anything.
"""

from __future__ import annotations

__all__ = [
    "MAX_CALL_CENTS",
    "MAX_ITEMS_PER_CALL",
    "MAX_LINE_CENTS",
    "MAX_QUANTITY",
    "MAX_QUANTITY_MILLI",
    "beyond",
]

MAX_LINE_CENTS = 10**11  # 10^9 currency units per line
MAX_CALL_CENTS = 10**13  # 10^11 currency units per call, in absolute value
MAX_ITEMS_PER_CALL = 10_000  # lines, charges, movements or batch items per call
MAX_QUANTITY = 10**6  # units of a charge line
MAX_QUANTITY_MILLI = 10**9  # thousandths of a unit of a stock movement (10^6 units)


def beyond(bound: int, unit: str) -> str:
    """Return the reason of a value past ``bound`` in absolute value; the value itself is not quoted."""
    return f"exceeds the bound of {bound} {unit} in absolute value"
