"""Build the event envelopes of one HL7 v2 message: ids from (sender, control id, position)."""

from __future__ import annotations

import datetime as dt

from canonical import ids
from canonical.envelope import EventEnvelope, EventType, Payload, SourceSystem
from canonical.hl7v2.reader import Reader


class Emitter:
    """Collect the envelopes of one message; every id is a pure function of the source."""

    def __init__(self, r: Reader, occurred_at: dt.datetime) -> None:
        msg = r.msg
        self.sender = msg.sender
        self.msg = msg
        self.occurred_at = occurred_at
        self.correlation = ids.correlation_id(self.sender, msg.control_id)
        self.message_type = msg.event_code
        self.events: list[EventEnvelope] = []

    def event_id(self, position: int) -> str:
        return ids.event_id(self.sender, self.msg.control_id, position)

    def emit(self, position: int, key: str, event_type: EventType, payload: Payload) -> None:
        self.events.append(
            EventEnvelope(
                event_id=self.event_id(position),
                correlation_id=self.correlation,
                encounter_id=key,
                source_system=SourceSystem.HL7V2,
                source_sender=self.sender,
                source_message_id=self.msg.control_id,
                source_message_type=self.message_type,
                source_position=position,
                event_type=event_type,
                occurred_at=self.occurred_at,
                payload=payload,
            )
        )


__all__ = ["Emitter"]
