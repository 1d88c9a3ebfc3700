"""HL7 v2 ER7 messages: a fast, exact parser for the pipe-delimited encoding."""

from canonical.hl7v2.parser import (
    Encoding,
    Hl7Message,
    Segment,
    escape,
    parse_message,
    split_messages,
    unescape,
)

__all__ = [
    "Encoding",
    "Hl7Message",
    "Segment",
    "escape",
    "parse_message",
    "split_messages",
    "unescape",
]
