"""ExceptionRecord: what the exceptions topic holds for a message or command that could not go on."""

from __future__ import annotations

import base64

from pydantic import AwareDatetime, Field

from canonical.errors import Fault
from canonical.models import CanonicalModel


class ExceptionRecord(CanonicalModel):
    """A quarantined item: the fault that stopped it and its original bytes, ready for a fix and replay."""

    record_id: str = Field(description="Deterministic: the same item failing the same way gives the same id")
    stage: str = Field(description="Where it failed: ingest, billing, erp")
    source_system: str = "hl7v2"
    message_key: str = Field("", description="Broker key of the source message (sender|control id)")
    source_message_id: str = Field("", description="MSH-10 when known")
    encounter_id: str | None = None
    rule: str
    reason: str
    segment: str = ""
    field: str = ""
    position: int | None = None
    found: str = ""
    original_b64: str = Field(description="Original bytes, base64")
    recorded_at: AwareDatetime

    @classmethod
    def from_fault(cls, fault: Fault, **fields: object) -> ExceptionRecord:
        """Build a record from a located fault plus the provenance fields."""
        return cls.model_validate(
            {
                "rule": fault.rule,
                "reason": fault.describe(),
                "source_message_id": fault.message_id,
                "segment": fault.segment,
                "field": fault.field,
                "position": fault.position,
                "found": fault.found,
                **fields,
            }
        )

    @property
    def original(self) -> bytes:
        """Return the original bytes."""
        return base64.b64decode(self.original_b64)
