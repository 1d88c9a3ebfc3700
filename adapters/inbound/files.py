"""A delivered file, told by content: HL7 v2 messages, X12 interchanges, or why it cannot be taken.

`hcsync send` and the watched inbox take files the same way: never by name, X12 read into interchanges
(each with its own delimiters) before anything is stored, so that an unreadable ISA refuses the whole
file with its location. A file of no known standard goes in as HL7 v2, where the parser names what is
wrong with it (quarantined with its bytes, as any broken message is).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canonical.detect import Standard, detect
from canonical.errors import DecodeError
from canonical.hl7v2.parser import split_messages
from canonical.x12.envelope import Interchange, read_interchanges

__all__ = ["FileContents", "read_delivered"]


@dataclass(frozen=True, slots=True)
class FileContents:
    """What one file holds: its standard, and its messages or interchanges, or why it is refused."""

    standard: Standard
    messages: list[bytes] = field(default_factory=list)  # HL7 v2 (and files of no known standard)
    interchanges: list[Interchange] = field(default_factory=list)  # X12
    refused: str = ""  # FHIR (not yet ingested), or X12 whose ISA cannot be read: why


def read_delivered(data: bytes, name: str) -> FileContents:
    """Tell ``data`` (a file called ``name``) by content and read it."""
    found = detect(data)
    if found.standard is Standard.FHIR:
        return FileContents(found.standard, refused=f"it holds {found.describe()}: FHIR is not yet ingested")
    if found.standard is Standard.X12:
        try:
            return FileContents(found.standard, interchanges=read_interchanges(data, name))
        except DecodeError as exc:
            return FileContents(found.standard, refused=str(exc))
    return FileContents(found.standard, messages=split_messages(data))
