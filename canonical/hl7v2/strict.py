"""Strict structural validation of HL7 v2 messages with hl7apy, refused up front when it would take too long.

hl7apy builds an object for every segment, field, repetition, component and subcomponent, and its time
grows with their number, not with the bytes: a 20 KB message with 10,000 repetitions of PID-3 took 3.1 s,
a 1 MB message with a thousand elements 14 ms. :func:`strict_fault` therefore counts the elements first (one
per segment and one per delimiter, an upper bound of what hl7apy builds) and refuses a message over
``max_elements`` or ``max_bytes`` with ``HL7-STRICT-TOO-LARGE`` without handing it to hl7apy.

The function is pure: no I/O, no event loop, no state beyond hl7apy's cached references, so the MLLP gateway
runs it in a thread and a Ray actor may call it directly (it pickles by reference).
"""

# Measured on the 2-core development machine (hl7apy 1.3.5, Python 3.11, CPU time of the validating thread,
# so other processes do not count), with tests/unit/test_hl7v2_strict.py::
# test_worst_case_at_the_default_caps_is_bounded (pytest -s prints the time) and a search over every field
# of EVN, PID, PV1, NK1, PV2, DG1, AL1, IN1, GT1 (ADT^A01) and PID, PV1, ORC, OBR, OBX (ORU^R01):
# - the costliest elements are repetitions of a short value (ORU PV1-7, PID-5, PID-6; ADT PV1-17, NK1-4):
#   about 0.35 ms each, against about 0.1 ms for the fields and components of ordinary messages;
# - the worst message at 800 elements took 0.19 to 0.30 s, at 900 0.22 to 0.34 s, at 1,000 0.25 to 0.38 s,
#   at 2,000 about 0.8 s (wall time on a loaded machine: up to 0.47 s at 900);
# - bytes cost little: 1,000 elements carrying 0.9 to 3.5 MB of text took 12 to 15 ms;
# - the first message of a version or structure pays about 0.06 s more while hl7apy loads its reference.
# Hence the defaults in foundation/settings.py: 900 elements, so one validation stays under 0.4 s even cold
# (every corpus message has at most 806), and 1 MiB. Time is about linear in elements.

from __future__ import annotations

import re

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import (
    InvalidDataType,
    InvalidDateFormat,
    InvalidDateOffset,
    InvalidMicrosecondsPrecision,
    MaxLengthReached,
    OperationNotAllowed,
    UnsupportedVersion,
)
from hl7apy.parser import parse_message as hl7apy_parse_message

from canonical.errors import Fault
from canonical.hl7v2.parser import Hl7Message, Segment

__all__ = ["TOO_LARGE_RULE", "element_count", "strict_fault"]

TOO_LARGE_RULE = "HL7-STRICT-TOO-LARGE"

_MISSING_CHILD = re.compile(r"Missing required child (\w+)\.(\w+)")
_SEGMENT_NAME = re.compile(r"[A-Z0-9]{3}")
_FIELD_NAME = re.compile(r"([A-Z0-9]{3})_(\d+)")
_DATATYPE_ERRORS = (
    ValueError,
    InvalidDataType,
    InvalidDateFormat,
    InvalidDateOffset,
    InvalidMicrosecondsPrecision,
    MaxLengthReached,
)


def _delimiters(msg: Hl7Message) -> tuple[str, ...]:
    """Return the message's own field, component, repetition and subcomponent separators, once each."""
    enc = msg.encoding
    return tuple(dict.fromkeys(c for c in (enc.field, enc.component, enc.repetition, enc.subcomponent) if c))


def element_count(msg: Hl7Message) -> int:
    """Return one per segment plus one per delimiter: at least as many elements as hl7apy would build."""
    text = msg.text
    return len(msg.segments) + sum(text.count(char) for char in _delimiters(msg))


def _busiest(msg: Hl7Message) -> tuple[Segment, int]:
    """Return the segment with the most elements, and its field with the most (an HL7 field number)."""
    delimiters = _delimiters(msg)

    def count(text: str) -> int:
        return sum(text.count(char) for char in delimiters)

    segment = max(msg.segments, key=lambda seg: count(seg.text))
    field = max(range(1, segment.field_count() + 1), key=lambda n: count(segment.raw_field(n)), default=0)
    return segment, field


def _too_large(msg: Hl7Message, max_bytes: int, max_elements: int) -> Fault | None:
    """Return the refusal of a message too large to validate in bounded time, or None."""
    size = len(msg.raw)
    if size > max_bytes:
        return Fault(
            rule=TOO_LARGE_RULE,
            reason=(
                f"the message has {size} bytes, more than the {max_bytes} strict validation accepts; "
                "it was refused without being validated"
            ),
            message_id=msg.control_id,
        )
    elements = element_count(msg)
    if elements <= max_elements:
        return None
    segment, field = _busiest(msg)
    return Fault(
        rule=TOO_LARGE_RULE,
        reason=(
            f"the message has {elements} elements (segments, fields, repetitions, components and "
            f"subcomponents), more than the {max_elements} strict validation accepts because its time "
            f"grows with each one; it was refused without being validated. Most are in {segment.name}"
            + (f"-{field}" if field else "")
        ),
        message_id=msg.control_id,
        segment=segment.name,
        field=f"{segment.name}-{field}" if field else "",
        position=segment.index,
    )


def strict_fault(msg: Hl7Message, *, max_bytes: int, max_elements: int) -> Fault | None:
    """Validate a message's structure with hl7apy; return the fault, or None when it is valid.

    A message over ``max_bytes`` (its bytes as received) or ``max_elements`` (see :func:`element_count`) is
    refused with ``HL7-STRICT-TOO-LARGE`` before hl7apy sees it.
    """
    if max_bytes < 1 or max_elements < 1:
        raise ValueError(
            f"strict validation limits must be positive: max_bytes={max_bytes}, max_elements={max_elements}"
        )
    refused = _too_large(msg, max_bytes, max_elements)
    if refused is not None:
        return refused
    try:
        # msg.text is the decoded message with CR between segments, whatever the sender used.
        hl7apy_parse_message(
            msg.text,
            validation_level=VALIDATION_LEVEL.STRICT,
            find_groups=True,
            force_validation=True,
        )
    except Exception as exc:
        # hl7apy reports bad input with its own exceptions, ValueError and others; each one is a refusal.
        return _hl7apy_fault(msg, exc)
    return None


def _hl7apy_fault(msg: Hl7Message, exc: Exception) -> Fault:
    """Turn an hl7apy validation error into a fault that locates it where the text allows."""
    text = str(exc) or type(exc).__name__
    rule = "HL7-STRICT-STRUCTURE"
    segment = field = ""
    missing = _MISSING_CHILD.search(text)
    if isinstance(exc, UnsupportedVersion):
        rule, segment, field = "HL7-STRICT-VERSION", "MSH", "MSH-12"
    elif missing:
        parent, child = missing.groups()
        named_field = _FIELD_NAME.fullmatch(child)
        if named_field and named_field.group(1) == parent:
            rule, segment, field = "HL7-STRICT-FIELD-MISSING", parent, f"{parent}-{int(named_field.group(2))}"
        elif _SEGMENT_NAME.fullmatch(child):
            rule, segment = "HL7-STRICT-SEGMENT-MISSING", child
    elif isinstance(exc, _DATATYPE_ERRORS) or text.startswith("Datatype"):
        rule = "HL7-STRICT-DATATYPE"
    elif isinstance(exc, OperationNotAllowed) and not msg.message_structure:
        text += (
            "; hl7apy needs MSH-9.3 (message structure) when the trigger event shares a structure, "
            "e.g. ADT^A04^ADT_A01"
        )
    found = msg.segment(segment) if segment else None
    return Fault(
        rule=rule,
        reason=f"hl7apy strict validation: {text}",
        message_id=msg.control_id,
        segment=segment,
        field=field,
        position=found.index if found is not None else None,
    )
