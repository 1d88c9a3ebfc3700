"""The event envelope: what travels on events.canonical, one per business event."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from canonical.models import CanonicalModel, Charge, Encounter, Patient

SCHEMA_VERSION = "1.0"


class EventType(StrEnum):
    """Business events hcsync derives from source messages."""

    ENCOUNTER_REGISTERED = "encounter.registered"  # ADT^A04
    ENCOUNTER_ADMITTED = "encounter.admitted"  # ADT^A01
    ENCOUNTER_UPDATED = "encounter.updated"  # ADT^A08
    ENCOUNTER_DISCHARGED = "encounter.discharged"  # ADT^A03
    CHARGE_POSTED = "charge.posted"  # DFT^P03 FT1 with FT1-6 = CG
    CHARGE_CREDITED = "charge.credited"  # DFT^P03 FT1 with FT1-6 = CD


class SourceSystem(StrEnum):
    """The standard a source message arrived in."""

    HL7V2 = "hl7v2"


class EncounterPayload(CanonicalModel):
    """Payload of an ADT event: who and which visit."""

    kind: Literal["encounter"] = "encounter"
    patient: Patient
    encounter: Encounter


class ChargePayload(CanonicalModel):
    """Payload of a charge event: the FT1 line and the visit it belongs to."""

    kind: Literal["charge"] = "charge"
    charge: Charge
    encounter: Encounter
    patient: Patient | None = None


Payload = Annotated[EncounterPayload | ChargePayload, Field(discriminator="kind")]


class EventEnvelope(CanonicalModel):
    """One canonical event with the provenance needed to trace it back to its source message."""

    event_id: str = Field(description="uuid5(sender, control id, position): deterministic")
    correlation_id: str = Field(description="uuid5(sender, control id): shared by one message's events")
    encounter_id: str = Field(min_length=1, description="Partition key of events.canonical")
    source_system: SourceSystem
    source_sender: str = Field(description="MSH-3.1 '^' MSH-4.1")
    source_message_id: str = Field(description="MSH-10 message control id")
    source_position: int = Field(ge=0, description="Index of this event within its source message")
    event_type: EventType
    occurred_at: AwareDatetime = Field(description="EVN-2, else MSH-7")
    schema_version: str = SCHEMA_VERSION
    payload: Payload
