"""Inputs the fuzz suite found that broke a property, kept as plain tests so they can never come back.

Each test names the bug it pins: what the input was, what went wrong, and where it was fixed.
"""

from __future__ import annotations

import pytest

from canonical.errors import InvalidMessageError
from canonical.hl7v2.mapping import canonicalize
from tests import hl7_samples
from tests.fuzz.targets import check_canonical

_BAR = hl7_samples.bar("P01", "R-BAR", "V1")


def _with(segment: bytes, position: int, value: bytes, message: bytes = _BAR) -> bytes:
    lines = message.split(b"\r")
    for index, line in enumerate(lines):
        if line.startswith(segment + b"|"):
            fields = line.split(b"|")
            fields.extend([b""] * (position + 1 - len(fields)))
            fields[position] = value
            lines[index] = b"|".join(fields)
            break
    return b"\r".join(lines)


@pytest.mark.parametrize(
    ("segment", "position", "value", "rule"),
    [
        (b"DG1", 1, b"99999999999999999999", "HL7-DG1-1-NUMBER"),
        (b"PR1", 1, b"9223372036854775808", "HL7-PR1-1-NUMBER"),
        (b"DG1", 15, b"-9223372036854775809", "HL7-DG1-15-NUMBER"),
        (b"PR1", 14, b"99999999999999999999999999", "HL7-PR1-14-NUMBER"),
        (b"DG1", 1, b"1_000", "HL7-DG1-1-NUMBER"),
        (b"DG1", 15, "\u0661".encode(), "HL7-DG1-15-NUMBER"),
    ],
)
def test_set_ids_and_priorities_beyond_int64_are_refused_where_they_are(
    segment: bytes, position: int, value: bytes, rule: str
) -> None:
    # Bug: DG1-1, PR1-1, DG1-15 and PR1-14 were read with int(), unbounded, so a BAR with a set id of
    # 10**20 mapped to a CodingUpdate that adapters/convert.py could not put in the int64 of the billing
    # request (ValueError "Value out of range" in the dispatcher, outside the error tree). int() also read
    # "1_000" and other scripts' digits. Fixed in canonical/hl7v2/reader.py (bounded_int).
    data = _with(segment, position, value)
    with pytest.raises(InvalidMessageError) as refused:
        canonicalize(data)
    fault = refused.value.fault
    assert (fault.rule, fault.segment, fault.field, fault.message_id) == (
        rule,
        segment.decode(),
        f"{segment.decode()}-{position}",
        "R-BAR",
    )
    check_canonical(data)


def test_set_ids_and_priorities_in_range_still_map() -> None:
    data = _with(b"DG1", 15, b"+2", _with(b"DG1", 1, b" 1000000 "))
    coding = [event for event in canonicalize(data) if event.event_type == "coding.updated"]
    diagnosis = coding[0].payload.coding.diagnoses[0]  # type: ignore[union-attr]
    assert (diagnosis.sequence, diagnosis.priority) == (1_000_000, 2)
