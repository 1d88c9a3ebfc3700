"""X12 interchanges as the message store holds them: identity, content digest and the envelope to search by.

One interchange is one stored message: its sender is ISA05:ISA06 (qualifier and id), its control id ISA13,
its type the transaction sets it carries (``837``, ``835,837``; ``TA1`` for an interchange holding only an
acknowledgment), and each transaction set's GS06 and ST02 are stored beside it to find it by. A
clearinghouse that resends an interchange keeps ISA13 but may re-stamp ISA09/ISA10 (date and time) and
change line ends; neither is a change of content, so the digest is taken over the segments, trimmed, with
ISA09 and ISA10 blanked. Any other difference under the same ISA13 is a conflict. No PHI is indexed:
an 837's patient is in its claims, not in the envelope.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from adapters.inbound.store import EnvelopeEntry, InboundMessage, MessageStore, Receipt, no_ack
from canonical import ids
from canonical.x12.envelope import Interchange, read_interchanges

__all__ = ["CONFLICT_RULE", "STANDARD", "store_interchanges", "x12_digest", "x12_inbound"]

STANDARD = "x12"
# The rule of an interchange whose sender and ISA13 were already received with other content.
CONFLICT_RULE = "X12-ISA13-CONFLICT"
# ISA09 and ISA10 (interchange date and time): what a resend may re-stamp.
_RESTAMPED = (9, 10)


def x12_digest(interchange: Interchange) -> str:
    """Return the content digest of an interchange: segments as read, ISA09 and ISA10 blanked."""
    digest = hashlib.sha256()
    isa = ["" if number in _RESTAMPED else value for number, value in enumerate(interchange.isa.elements, 1)]
    digest.update("\x1d".join(["ISA", *isa]).encode("utf-8"))
    for group in interchange.groups:
        for segment in [group.gs, *(s for t in group.transactions for s in t.segments)]:
            digest.update(b"\x1e" + "\x1d".join([segment.id, *segment.elements]).encode("utf-8"))
        if group.ge is not None:
            digest.update(b"\x1e" + "\x1d".join([group.ge.id, *group.ge.elements]).encode("utf-8"))
    for segment in interchange.loose:
        digest.update(b"\x1f" + "\x1d".join([segment.id, *segment.elements]).encode("utf-8"))
    return digest.hexdigest()


def _sender(interchange: Interchange) -> str:
    return f"{interchange.isa.element(5).strip()}:{interchange.isa.element(6).strip()}"


def x12_inbound(interchange: Interchange, channel: str, received_at: dt.datetime) -> InboundMessage:
    """Describe one interchange for the store."""
    entries = tuple(
        EnvelopeEntry(
            group_control=group.control,
            functional_id=group.functional_id,
            set_control=transaction.control,
            set_code=transaction.code,
            guide=transaction.st.element(3) or group.version,
        )
        for group in interchange.groups
        for transaction in group.transactions
    )
    codes = sorted({entry.set_code for entry in entries})
    if not codes and interchange.loose:
        codes = sorted({segment.id for segment in interchange.loose})
    sender = _sender(interchange)
    return InboundMessage(
        standard=STANDARD,
        sender=sender,
        control_id=interchange.control,
        message_type=",".join(codes),
        content=interchange.text.encode(interchange.encoding),
        digest=x12_digest(interchange),
        broker_key=ids.message_key(sender, interchange.control).encode(),
        channel=channel,
        received_at=received_at,
        envelope=entries,
    )


def store_interchanges(store: MessageStore, answers: list[bytes], channel: str) -> list[Receipt]:
    """Store X12 that came back on a call (a payer's 271, 999 or TA1) as inbound interchanges.

    Durable in the message store like any delivery, so the forwarder puts it on raw.x12 and the X12 ingest
    reads it; a resent answer is a duplicate. Raises DecodeError when an answer holds no readable ISA.
    """
    now = dt.datetime.now(dt.UTC)
    messages = [
        x12_inbound(interchange, channel, now)
        for answer in answers
        for interchange in read_interchanges(answer, channel)
    ]
    return store.store([(message, no_ack) for message in messages])
