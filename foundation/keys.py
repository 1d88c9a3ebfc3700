"""The broker key of a raw source message: sender|control id, the same for every path into the broker."""

from __future__ import annotations

import hashlib

from canonical import ids
from canonical.errors import DecodeError
from canonical.hl7v2.parser import parse_message

__all__ = ["keyed"]


def keyed(raw: bytes) -> bytes:
    """Return the broker key of a raw message: sender|control id, or a digest when it does not parse."""
    try:
        msg = parse_message(raw)
    except DecodeError:
        return b"undecodable|" + hashlib.sha256(raw).hexdigest().encode()
    return ids.message_key(msg.sender, msg.control_id).encode()
