"""What the ingest made of each source message, as it travels from the workers to the message store.

The forwarder sends each stored message with a ``hcsync-message-id`` header. The ingest agent reads it
back and, once a transform batch's outputs are on the broker, publishes one :class:`OutcomeBatch` record
to ``outcomes.ingest`` naming, per message, whether it was mapped (with its event ids), routed, or
quarantined (with the exception id and rule). The forwarder writes those into the message store.

A message that reached the raw topic another way (a quarantine replay) has no header; its outcome names
it by its broker key, and the store gives it to the first receipt of that key.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from adapters.inbound.store import OutcomeUpdate

__all__ = ["MESSAGE_ID_HEADER", "MessageOutcome", "OutcomeBatch", "message_id_of"]

MESSAGE_ID_HEADER = "hcsync-message-id"


class MessageOutcome(BaseModel):
    """What became of one source message in the ingest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field("", description="The message store's id (the record's header); empty if none")
    standard: str = "hl7v2"
    key_b64: str = Field(description="The raw record's key (sender|control id), base64")
    outcome: Literal["mapped", "routed", "quarantined"]
    event_ids: tuple[str, ...] = ()
    exception_id: str | None = None
    rule: str = Field("", description="The quarantine rule, for a quarantined message")
    note: str = Field("", description="What else to record: an X12 interchange's 999/TA1 and outbox files")


class OutcomeBatch(BaseModel):
    """The outcomes of one transform batch, stamped when its outputs were on the broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime
    outcomes: tuple[MessageOutcome, ...]

    def updates(self) -> list[OutcomeUpdate]:
        """Return the store updates this batch makes."""
        return [
            OutcomeUpdate(
                message_id=o.message_id,
                standard=o.standard,
                broker_key=base64.b64decode(o.key_b64),
                outcome=o.outcome,
                at=self.at,
                event_ids=o.event_ids,
                exception_id=o.exception_id,
                rule=o.rule,
                note=o.note,
            )
            for o in self.outcomes
        ]


def message_id_of(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> str:
    """Return the message store id a raw record's headers carry ("" when none).

    Faust hands headers over as a list of (name, value) pairs or as a mapping, depending on the path.
    """
    if not headers:
        return ""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == MESSAGE_ID_HEADER:
            return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return ""
