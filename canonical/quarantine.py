"""ExceptionRecord: what the exceptions topic holds for a message or command that could not go on."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from pydantic import AwareDatetime, Field, ValidationError

from canonical import ids
from canonical.envelope import EventEnvelope
from canonical.errors import Fault
from canonical.models import CanonicalModel
from canonical.phi import PhiField


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
    fix_hint: str = Field("", description="How to fix the cause before a replay, when the rule knows it")
    original_b64: str = PhiField(description="Original bytes, base64 (PHI: the raw message)")
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
                "fix_hint": fault.hint,
                **fields,
            }
        )

    @property
    def original(self) -> bytes:
        """Return the original bytes."""
        return base64.b64decode(self.original_b64)


def _record_json(stage: str, value: bytes, rule: str, reason: str, id_seed: bytes, field: str = "") -> bytes:
    record = ExceptionRecord(
        record_id=hashlib.sha256(id_seed + value).hexdigest()[:32],
        stage=stage,
        rule=rule,
        reason=reason,
        field=field,
        original_b64=base64.b64encode(value).decode("ascii"),
        recorded_at=dt.datetime.now(dt.UTC),
    )
    return record.model_dump_json().encode("utf-8")


def poison_record(stage: str, value: bytes, exc: ValidationError) -> bytes:
    """Return the JSON quarantine record of a record that does not validate against its model."""
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    reason = f"{stage}: record does not validate at {location or 'top level'}: {first['msg']}"
    return _record_json(stage, value, "CANONICAL-INVALID", reason, stage.encode() + b"|", field=location)


def failure_record(stage: str, value: bytes, rule: str, exc: Exception) -> bytes:
    """Return the JSON quarantine record of an item whose processing kept failing."""
    reason = f"{stage}: {type(exc).__name__}: {exc}"
    return _record_json(stage, value, rule, reason, stage.encode() + b"|" + rule.encode() + b"|")


def unenriched_record(event: EventEnvelope) -> bytes:
    """Return the quarantine record of a posting that carries no master-data dimensions.

    Such an event was written before enrichment existed (schema below 1.2). Replaying the record gives the
    same event, so the fix is to send its source message again: it is enriched on the way in, and its
    event id is the same, so it posts once.
    """
    value = event.model_dump_json().encode("utf-8")
    record = ExceptionRecord(
        record_id=hashlib.sha256(b"encounters|ENCOUNTER-NOT-ENRICHED|" + value).hexdigest()[:32],
        stage="encounters",
        message_key=ids.message_key(event.source_sender, event.source_message_id),
        source_message_id=event.source_message_id,
        encounter_id=event.encounter_id,
        rule="ENCOUNTER-NOT-ENRICHED",
        reason=(
            f"event {event.event_id} ({event.event_type.value}, schema {event.schema_version}) has no ERP "
            "dimensions: it was mapped before master-data enrichment and cannot post"
        ),
        fix_hint=(
            f"send message {event.source_message_id} from {event.source_sender} again (hcsync send FILE, "
            "or from the EHR): it is enriched on the way in and posts once"
        ),
        original_b64=base64.b64encode(value).decode("ascii"),
        recorded_at=dt.datetime.now(dt.UTC),
    )
    return record.model_dump_json().encode("utf-8")
