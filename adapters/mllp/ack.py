"""HL7 v2 acknowledgments (ACK) for the MLLP gateway, built with hl7apy.

Which code, and whether to answer at all, follows the sender's MSH-15 (accept acknowledgment type):

- MSH-15 empty (or not one of AL, ER, SU, NE): original mode, always answered with AA, AE or AR.
- MSH-15 AL, ER, SU or NE: enhanced mode, answered with a commit ACK, CA, CE or CR: AL always, ER only
  on an error, SU only on success, NE never (the message is still committed). MSH-16 (application
  acknowledgment) asks for a later, application-level answer that the gateway does not give.

The ACK's MSH swaps the sending and receiving application and facility, keeps the message's version when
hl7apy knows it (2.5 otherwise), and carries a control id derived from the original one, so a resend is
answered with the same id. MSA-2 always echoes MSH-10. An error adds an ERR segment: in v2.5 and later
ERR-2 (location), ERR-3 (table 0357 code), ERR-4 (severity E) and ERR-8 (the fault, described); v2.1 to
2.4 define only ERR-1, so there the location and code go to ERR-1, and the rule and reason to MSA-3
(an ST of 80 characters).

Encoding characters: values are read from the inbound message with its own delimiters (custom ones
included), unescaped, then escaped again for the ACK, which always declares the standard ``|^~\\&`` (from
v2.7 on the truncation character is optional, and leaving it out keeps ``#`` plain data). MSH-1 and MSH-2
of the ACK tell the receiver so; every conforming receiver reads the delimiters from them. Only the escape
sequences \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ are written, because hl7apy escapes the escape character of any other
sequence again on output; line breaks and other control characters in a value become spaces (a CR would
end the segment, a 0x1C the MLLP frame). The ACK is UTF-8; MSH-18 says so when it holds anything beyond
ASCII.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from enum import StrEnum
from functools import lru_cache

import hl7apy
from hl7apy import load_reference
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message

from canonical.errors import DecodeError, Fault
from canonical.hl7v2.parser import Encoding, Hl7Message, Segment, escape, parse_message

__all__ = [
    "ENHANCED_MODES",
    "FALLBACK_VERSION",
    "GATEWAY_APPLICATION",
    "HL7_ERROR_CODES",
    "POSITIVE_CODES",
    "Outcome",
    "ack_code",
    "ack_control_id",
    "build_ack",
    "error_code",
    "header_of",
    "is_enhanced",
]

# MSH-15 values that put a message in enhanced acknowledgment mode (HL7 table 0155).
ENHANCED_MODES = frozenset({"AL", "ER", "SU", "NE"})
POSITIVE_CODES = frozenset({"AA", "CA"})
_NEGATIVE_CODES = frozenset({"AE", "AR", "CE", "CR"})
FALLBACK_VERSION = "2.5"
# MSH-3 of an ACK to a message whose own MSH could not be read.
GATEWAY_APPLICATION = "HCSYNC"

# HL7 table 0357 (message error condition codes), with the names ERR-3.2 carries.
_ERROR_NAMES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "207": "Application internal error",
}
# Fault rule to table 0357 code; a rule not listed is an application internal error (207).
HL7_ERROR_CODES: dict[str, str] = {
    "HL7-MSH-MISSING": "100",
    "HL7-SEGMENT-NAME": "100",
    "HL7-MSH-REPEATED": "100",
    "HL7-ENCODING-CHARS": "102",
    "HL7-CHARSET": "102",
    "HL7-MSH-10-MISSING": "101",
    "HL7-STRICT-SEGMENT-MISSING": "100",
    "HL7-STRICT-FIELD-MISSING": "101",
    "HL7-STRICT-STRUCTURE": "100",
    "HL7-STRICT-DATATYPE": "102",
    "HL7-STRICT-TABLE": "103",
    "HL7-STRICT-MESSAGE-TYPE": "200",
    "HL7-STRICT-VERSION": "203",
    "MESSAGE-TOO-LARGE": "207",
    "BROKER-NOT-COMMITTED": "207",
}

# Longest control id kept readable in the ACK's MSH-10 (ST of 20 characters up to v2.6).
_CONTROL_ID_CHARS = 20
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
# Longest MSA-3 (an ST in v2.1 to 2.4) and ERR-8 (a TX), counted after escaping.
_MSA3_CHARS = 80
_ERR8_CHARS = 2048
# Control characters: a CR would end the segment, 0x0B or 0x1C the MLLP frame.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The delimiters of every ACK, handed to hl7apy so it does not declare a v2.7 truncation character.
_ACK_DELIMITERS = {
    "FIELD": "|",
    "COMPONENT": "^",
    "REPETITION": "~",
    "ESCAPE": "\\",
    "SUBCOMPONENT": "&",
    "GROUP": "\r",
    "SEGMENT": "\r",
}
_ENC = Encoding()
# How far into unparsable bytes to look for an MSH segment.
_HEADER_SCAN_BYTES = 65_536
_LEAD_JUNK = b"\x0b\x1c\x00\t "
_BOM = b"\xef\xbb\xbf"
_FIELD_REF = re.compile(r"([A-Z0-9]{3})-(\d+)")
# Versions whose MSH-9 has no third component (message structure).
_TWO_PART_MSH9 = frozenset({"2.1", "2.2", "2.3"})
_NO_MSH18 = frozenset({"2.1", "2.2"})


class Outcome(StrEnum):
    """What became of a message: accepted (committed), refused for its content, or rejected outright."""

    ACCEPT = "accept"
    ERROR = "error"
    REJECT = "reject"


_ORIGINAL = {Outcome.ACCEPT: "AA", Outcome.ERROR: "AE", Outcome.REJECT: "AR"}
_ENHANCED = {Outcome.ACCEPT: "CA", Outcome.ERROR: "CE", Outcome.REJECT: "CR"}


def is_enhanced(msg: Hl7Message | None) -> bool:
    """Say whether the sender asked for enhanced-mode (commit) acknowledgments in MSH-15."""
    # MSH-15 first appeared in v2.2: a v2.1 header has no such field, whatever its 15th field holds.
    if msg is None or msg.version.strip() in ("2.0", "2.1"):
        return False
    return msg.accept_ack_type.strip().upper() in ENHANCED_MODES


def ack_code(msg: Hl7Message | None, outcome: Outcome) -> str | None:
    """Return the MSA-1 code for an outcome, or None when the sender's MSH-15 asks for no answer."""
    if not is_enhanced(msg):
        return _ORIGINAL[outcome]
    assert msg is not None
    mode = msg.accept_ack_type.strip().upper()
    if mode == "NE" or (mode == "ER" and outcome is Outcome.ACCEPT):
        return None
    if mode == "SU" and outcome is not Outcome.ACCEPT:
        return None
    return _ENHANCED[outcome]


def error_code(rule: str) -> str:
    """Return the HL7 table 0357 code for a fault rule."""
    return HL7_ERROR_CODES.get(rule, "207")


def ack_control_id(control_id: str, raw: bytes) -> str:
    """Return the ACK's MSH-10: "ACK" + the original id, or a digest of it when that would not fit."""
    if control_id and len(control_id) + 3 <= _CONTROL_ID_CHARS and _SAFE_ID.fullmatch(control_id):
        return "ACK" + control_id
    # Cutting a long id could make two ids share an ACK id; a digest keeps them apart and deterministic.
    source = control_id.encode("utf-8") if control_id else raw
    return "ACK" + hashlib.sha256(source).hexdigest()[: _CONTROL_ID_CHARS - 3].upper()


def header_of(raw: bytes) -> Hl7Message | None:
    """Return the MSH segment of bytes that may not parse as a whole, or None when none can be read."""
    for line in raw[:_HEADER_SCAN_BYTES].splitlines():
        head = line.lstrip(_LEAD_JUNK)
        if head.startswith(_BOM):
            head = head[len(_BOM) :].lstrip(_LEAD_JUNK)
        if head.startswith(b"MSH"):
            try:
                return parse_message(head)
            except DecodeError:
                return None
    return None


@lru_cache(maxsize=32)
def _err_fields(version: str) -> frozenset[str]:
    """Return the field names hl7apy defines for the ERR segment of a version."""
    reference = load_reference("ERR", "Segment", version)
    return frozenset(str(child[0]) for child in reference[1])


def _version_of(msg: Hl7Message | None) -> str:
    """Return the version to answer in: the message's own when hl7apy supports it, else the fallback."""
    version = msg.version.strip() if msg is not None else ""
    return version if version in hl7apy.SUPPORTED_LIBRARIES else FALLBACK_VERSION


def _esc(value: str, enc: Encoding = _ENC) -> str:
    """Escape a value for one field of the ACK; control characters become spaces."""
    return escape(_CONTROL.sub(" ", value), enc)


def _fit(value: str, enc: Encoding, limit: int) -> str:
    """Escape a value and shorten it until the escaped form has at most ``limit`` characters."""
    keep = len(value)
    text = _esc(value, enc)
    while len(text) > limit:
        # Cut the source, not the escaped text, so no escape sequence is ever split.
        keep -= max(1, (len(text) - limit) // 5)
        text = _esc(value[:keep], enc)
    return text


def _components(seg: Segment, field: int, count: int, enc: Encoding) -> str:
    """Re-encode the first ``count`` components of a field for the ACK's delimiters."""
    parts = [_esc(seg.get(field, n), enc) for n in range(1, count + 1)]
    while parts and not parts[-1]:
        parts.pop()
    return enc.component.join(parts)


def _location(fault: Fault, msg: Hl7Message | None) -> tuple[str, str, str]:
    """Return the segment id, segment sequence and field position of a fault, each "" when unknown."""
    segment = fault.segment
    position = ""
    match = _FIELD_REF.fullmatch(fault.field)
    if match:
        segment = segment or match.group(1)
        position = str(int(match.group(2)))
    if not (len(segment) == 3 and segment.isascii() and segment.isalnum() and segment.isupper()):
        return "", "", ""
    sequence = ""
    if segment == "MSH":
        sequence = "1"
    elif (
        msg is not None
        and fault.position is not None
        and 0 <= fault.position < len(msg.segments)
        and msg.segments[fault.position].name == segment
    ):
        # Fault positions from the parser and mappers are segment indexes; ERR wants the occurrence number.
        sequence = str(sum(1 for seg in msg.segments[: fault.position + 1] if seg.name == segment))
    return segment, sequence, position


def build_ack(msg: Hl7Message | None, raw: bytes, code: str, error: Fault | None) -> bytes:
    """Build the ACK (ER7 bytes, CR after each segment, no MLLP framing) answering one message.

    ``msg`` is the parsed message, or None when it did not parse; its MSH is then looked for in ``raw``,
    and when there is none the ACK has an empty MSA-2. ``error`` is required for AE, AR, CE and CR.
    """
    if code not in POSITIVE_CODES and code not in _NEGATIVE_CODES:
        raise ValueError(f"{code!r} is not an acknowledgment code (AA, AE, AR, CA, CE, CR)")
    if (code in _NEGATIVE_CODES) != (error is not None):
        raise ValueError(f"an ERR fault is required with {code} and only then")
    header = msg if msg is not None else header_of(raw)
    version = _version_of(header)
    ack = Message(
        "ACK", version=version, validation_level=VALIDATION_LEVEL.TOLERANT, encoding_chars=_ACK_DELIMITERS
    )
    enc = _ENC
    msh = ack.msh
    if header is not None:
        sent = header.header
        for target, source in ((3, 5), (4, 6), (5, 3), (6, 4)):
            value = _components(sent, source, 3, enc)
            if value:
                setattr(msh, f"msh_{target}", value)
        trigger = _esc(header.trigger_event, enc)
        control_id = header.control_id
        processing = _esc(sent.get(11, 1), enc) or "P"
    else:
        msh.msh_3 = GATEWAY_APPLICATION
        trigger = ""
        control_id = ""
        processing = "P"
    msh.msh_7 = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S+0000")
    msh_9 = ["ACK", trigger] if version in _TWO_PART_MSH9 else ["ACK", trigger, "ACK"]
    msh.msh_9 = enc.component.join(msh_9) if trigger else "ACK"
    msh.msh_10 = _esc(ack_control_id(control_id, raw), enc)
    msh.msh_11 = processing
    if code.startswith("C"):
        # A commit ACK is itself never acknowledged.
        msh.msh_15 = "NE"
        msh.msh_16 = "NE"
    msa = ack.add_segment("MSA")
    msa.msa_1 = code
    if control_id:
        msa.msa_2 = _esc(control_id, enc)
    patch_err = False
    if error is not None:
        err = ack.add_segment("ERR")
        hl7_code = error_code(error.rule)
        segment, sequence, position = _location(error, msg)
        name = _esc(_ERROR_NAMES.get(hl7_code, ""), enc)
        fields = _err_fields(version)
        if "ERR_2" in fields:
            if segment:
                err.err_2 = enc.component.join((segment, sequence, position)).rstrip(enc.component)
            err.err_3 = enc.component.join((hl7_code, name, "HL70357"))
            err.err_4 = "E"
            err.err_8 = _fit(error.describe(), enc, _ERR8_CHARS)
            # hl7apy's v2.8 reference leaves out the withdrawn ERR-1 and would write ERR-2 in its place.
            patch_err = "ERR_1" not in fields
        else:
            code_part = enc.subcomponent.join((hl7_code, name, "HL70357"))
            err.err_1 = enc.component.join((segment, sequence, position, code_part))
            # ERR-1 already holds the location, so the short MSA-3 gets the rule and the reason.
            msa.msa_3 = _fit(f"[{error.rule}] {error.reason}", enc, _MSA3_CHARS)
    lines: list[str] = []
    for segment_el in ack.children:
        line: str = segment_el.to_er7()
        if patch_err and segment_el.name == "ERR":
            line = "ERR" + enc.field + line[3:]
        lines.append(line)
    text_out = "\r".join(lines) + "\r"
    if not text_out.isascii() and version not in _NO_MSH18:
        msh.msh_18 = "UNICODE UTF-8"
        lines[0] = msh.to_er7()
        text_out = "\r".join(lines) + "\r"
    return text_out.encode("utf-8")
