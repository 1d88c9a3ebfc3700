"""Tell an inbound file or message's standard by its content: HL7 v2, X12 or FHIR, never by its name.

Senders name files as they like (``.txt``, ``.dat``, ``.edi``, no extension), so ``hcsync send`` and
``hcsync parse`` look at the bytes. What real senders put before the content is skipped first: a UTF-8
byte-order mark, whitespace and line ends, and the MLLP start block of a captured frame.

- **X12**: an ``ISA`` interchange header. ISA is fixed-length (106 characters): the character after
  ``ISA`` is the element separator, the 105th the component separator and the 106th the segment
  terminator; ISA11 is the repetition separator in 5010 (``U`` in 4010). The detail names ISA13 (the
  interchange control number) and ISA12 (the version), so a refusal can say which interchange it means.
- **HL7 v2**: an ``MSH``, ``FHS`` or ``BHS`` segment followed by its field separator.
- **FHIR**: a JSON object with a ``resourceType``, or XML in the ``http://hl7.org/fhir`` namespace.

Anything else is :attr:`Standard.UNKNOWN`; the caller decides what to do with it (hcsync treats it as HL7
v2, whose parser then names what is wrong). Detection reads at most the first 64 KiB but a JSON document,
which is parsed whole to find its ``resourceType`` (a sender's bundle is a few MB at most, and the caller
has the whole file in memory anyway).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Detected", "Standard", "detect"]

_UTF8_BOM = b"\xef\xbb\xbf"
_MLLP_START = b"\x0b"
_SNIFF_BYTES = 65_536
# ISA is 106 characters: "ISA", then 16 elements, each after one element separator, then the terminator.
_ISA_LENGTH = 106
_ISA_ELEMENTS = 16
_HL7_HEADERS = (b"MSH", b"FHS", b"BHS")
_FHIR_XML = re.compile(rb"""xmlns\s*=\s*["']http://hl7\.org/fhir["']""")


class Standard(StrEnum):
    """The standards hcsync tells apart."""

    HL7V2 = "hl7v2"
    X12 = "x12"
    FHIR = "fhir"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Detected:
    """What a file holds: its standard and a short description naming the content (never PHI)."""

    standard: Standard
    detail: str = ""

    def describe(self) -> str:
        """Render as "an X12 interchange (ISA13 000000001, version 00501)" and the like."""
        names = {
            Standard.HL7V2: "HL7 v2",
            Standard.X12: "an X12 interchange",
            Standard.FHIR: "FHIR",
            Standard.UNKNOWN: "no known standard",
        }
        name = names[self.standard]
        return f"{name} ({self.detail})" if self.detail else name


def _start(data: bytes) -> bytes:
    """The first bytes that matter: after a UTF-8 BOM, whitespace and an MLLP start block."""
    head = data[:_SNIFF_BYTES]
    while True:
        trimmed = head.removeprefix(_UTF8_BOM).lstrip().removeprefix(_MLLP_START)
        if trimmed == head:
            return head
        head = trimmed


def _x12(head: bytes) -> Detected:
    """Describe an interchange whose bytes start with ISA; a header that breaks the fixed layout is named."""
    separator = head[3:4]
    if len(head) < _ISA_LENGTH or not separator or separator.isalnum() or separator.isspace():
        return Detected(Standard.X12, "ISA header shorter than 106 characters or no element separator")
    isa = head[:_ISA_LENGTH]
    elements = isa[: _ISA_LENGTH - 1].split(separator)
    if len(elements) != _ISA_ELEMENTS + 1:
        return Detected(
            Standard.X12,
            f"ISA header has {len(elements) - 1} elements where 16 are fixed-length; delimiters unreadable",
        )
    version = elements[12].decode("ascii", "replace").strip()
    control = elements[13].decode("ascii", "replace").strip()
    return Detected(Standard.X12, f"ISA13 {control}, version {version}")


def _fhir_json(data: bytes) -> Detected | None:
    try:
        document = json.loads(data.removeprefix(_UTF8_BOM))
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(document, dict) and isinstance(document.get("resourceType"), str):
        return Detected(Standard.FHIR, f"JSON {document['resourceType']}")
    return None


def detect(data: bytes) -> Detected:
    """Return the standard ``data`` (a whole file or message) is written in."""
    head = _start(data)
    if head.startswith(b"ISA"):
        return _x12(head)
    if head[:3] in _HL7_HEADERS and len(head) > 3 and not head[3:4].isalnum():
        return Detected(Standard.HL7V2, head[:3].decode("ascii"))
    if head.startswith(b"{"):
        found = _fhir_json(data)
        if found is not None:
            return found
    if head.startswith(b"<") and _FHIR_XML.search(head):
        return Detected(Standard.FHIR, "XML")
    return Detected(Standard.UNKNOWN)
