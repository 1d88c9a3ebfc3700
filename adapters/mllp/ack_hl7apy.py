"""The reference ACK builder: the same ACK as :func:`adapters.mllp.ack.build_ack`, built with hl7apy.

It was the gateway's builder until the direct one replaced it on the hot path (hl7apy takes 4 to 6 ms per
ACK, which capped a gateway at 200 to 300 messages/s). It stays as the reference the direct builder is
compared with, field by field, over the corpus (tests/unit/test_mllp_ack.py): hl7apy decides here what the
direct builder hard-codes, the versions it knows, which ERR fields each version has and how an ER7 segment
is laid out.

Two things hl7apy cannot write are patched into its output: its v2.8 reference leaves out the withdrawn
ERR-1 (and would write ERR-2 in its place), and it escapes the escape character of a hexadecimal escape
again (it keeps only \\H\\ \\N\\ \\F\\ \\S\\ \\T\\ \\R\\ \\E\\), so the exact MSA-2 is written into its line.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import hl7apy
from hl7apy import load_reference
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message

from adapters.mllp.ack import (
    _CONTROL,
    _ENC,
    _ERR8_CHARS,
    _ERROR_NAMES,
    _MSA3_CHARS,
    _NO_MSH18,
    _TWO_PART_MSH9,
    FALLBACK_VERSION,
    GATEWAY_APPLICATION,
    _check,
    _components,
    _esc,
    _fit,
    _location,
    _timestamp,
    _value,
    ack_control_id,
    echo,
    error_code,
    header_of,
)
from canonical.errors import Fault
from canonical.hl7v2.parser import Hl7Message

__all__ = ["build_ack_hl7apy"]

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


@lru_cache(maxsize=32)
def _err_fields(version: str) -> frozenset[str]:
    """Return the field names hl7apy defines for the ERR segment of a version."""
    reference = load_reference("ERR", "Segment", version)
    return frozenset(str(child[0]) for child in reference[1])


def _version_of(msg: Hl7Message | None) -> str:
    """Return the version to answer in: the message's own when hl7apy supports it, else the fallback."""
    version = msg.version.strip() if msg is not None else ""
    return version if version in hl7apy.SUPPORTED_LIBRARIES else FALLBACK_VERSION


def build_ack_hl7apy(
    msg: Hl7Message | None, raw: bytes, code: str, error: Fault | None, *, now: dt.datetime | None = None
) -> bytes:
    """Build the ACK answering one message with hl7apy; the arguments are those of ``build_ack``."""
    header = msg if msg is not None else header_of(raw)
    version = _version_of(header)
    _check(code, error, version)
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
        trigger = _value(sent, 9, 2, enc)
        control_id = header.control_id
        processing = _value(sent, 11, 1, enc) or "P"
    else:
        msh.msh_3 = GATEWAY_APPLICATION
        trigger = ""
        control_id = ""
        processing = "P"
    msh.msh_7 = _timestamp(now)
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
        if segment_el.name == "MSA" and _CONTROL.search(control_id):
            # hl7apy wrote the control characters as spaces; the exact echo escapes them as \\Xhh\\.
            parts = line.split(enc.field)
            parts[2] = echo(control_id, enc)
            line = enc.field.join(parts)
        lines.append(line)
    text_out = "\r".join(lines) + "\r"
    if not text_out.isascii() and version not in _NO_MSH18:
        msh.msh_18 = "UNICODE UTF-8"
        lines[0] = msh.to_er7()
        text_out = "\r".join(lines) + "\r"
    return text_out.encode("utf-8")
