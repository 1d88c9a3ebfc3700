"""ExceptionRecord: what the exceptions topic holds for a message or command that could not go on."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from pydantic import AwareDatetime, Field, ValidationError

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
