"""HL7 v2 messages as the message store holds them: identity, content digest and search fields.

The digest tells a resend from a conflict. Real senders resend after a lost ACK; some re-stamp MSH-7
(date/time of message) or change line endings when they do. Neither is a change of content, so the digest
is taken over the segments with their terminators normalised (CR, LF or CRLF; empty lines dropped) and
MSH-7 blanked. Anything else that differs, down to one character of one field, makes a conflict.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re

from adapters.inbound.store import InboundMessage
from canonical import ids
from canonical.errors import DecodeError
from canonical.hl7v2.parser import Hl7Message, parse_message
from foundation.keys import keyed

__all__ = ["CONFLICT_RULE", "STANDARD", "hl7v2_digest", "hl7v2_inbound", "hl7v2_inbound_bytes"]

STANDARD = "hl7v2"
# The rule of a message whose sender and MSH-10 were already received with other content.
CONFLICT_RULE = "HL7-MSH-10-CONFLICT"
_LINES = re.compile(rb"\r\n|\r|\n")
_MSH7 = 6  # MSH-7's index once MSH is split on its field separator (MSH-1 is the separator itself)


def hl7v2_digest(raw: bytes) -> str:
    """Return the content digest of an HL7 v2 message: terminators normalised, MSH-7 blanked."""
    segments: list[bytes] = []
    for line in _LINES.split(raw):
        if not line.strip():
            continue
        if line.startswith(b"MSH") and len(line) > 3:
            separator = line[3:4]
            fields = line.split(separator)
            if len(fields) > _MSH7:
                fields[_MSH7] = b""
            line = separator.join(fields)
        segments.append(line.rstrip(b" \t"))
    return hashlib.sha256(b"\r".join(segments)).hexdigest()


def hl7v2_inbound(raw: bytes, msg: Hl7Message, channel: str, received_at: dt.datetime) -> InboundMessage:
    """Describe a parsed HL7 v2 message for the store."""
    pv1 = msg.segment("PV1")
    pid = msg.segment("PID")
    return InboundMessage(
        standard=STANDARD,
        sender=msg.sender,
        control_id=msg.control_id,
        message_type=msg.event_code,
        content=raw,
        digest=hl7v2_digest(raw),
        broker_key=ids.message_key(msg.sender, msg.control_id).encode(),  # as foundation.keys.keyed
        channel=channel,
        received_at=received_at,
        visit_number=pv1.get(19).strip() if pv1 is not None else "",
        patient_id=pid.get(3).strip() if pid is not None else "",
    )


def hl7v2_inbound_bytes(raw: bytes, channel: str, received_at: dt.datetime) -> InboundMessage:
    """Describe any bytes for the store, parsed or not (a file may hold what a gateway would refuse).

    Bytes that do not parse, or a message without MSH-10, are stored under their content digest, so each
    is its own message: the ingest quarantines them with the fault, and their bytes stay in the store.
    """
    try:
        msg = parse_message(raw)
    except DecodeError:
        digest = hashlib.sha256(raw).hexdigest()
        return InboundMessage(
            standard=STANDARD,
            sender="undecodable",
            control_id=f"sha256:{digest}",
            message_type="",
            content=raw,
            digest=digest,
            broker_key=keyed(raw),
            channel=channel,
            received_at=received_at,
        )
    inbound = hl7v2_inbound(raw, msg, channel, received_at)
    if msg.control_id.strip():
        return inbound
    return dataclasses.replace(inbound, control_id=f"sha256:{hashlib.sha256(raw).hexdigest()}")
