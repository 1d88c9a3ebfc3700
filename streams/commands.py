"""Commands the encounter agent sends to the billing and ERP dispatchers.

Each command carries ``command_id``, a deterministic idempotency key derived from the event that caused
it, so a replayed event produces the same command and the sink recognises it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from canonical.models import CanonicalModel, Charge, Encounter, EncounterStatus, JournalLine, Patient


class UpsertAccountCommand(CanonicalModel):
    """Create or update the billing account of an encounter."""

    kind: Literal["upsert_account"] = "upsert_account"
    command_id: str
    encounter: Encounter
    patient: Patient | None
    status: EncounterStatus
    source_event_id: str
    correlation_id: str


class PostChargeCommand(CanonicalModel):
    """Post one charge (or credit) line to billing."""

    kind: Literal["post_charge"] = "post_charge"
    command_id: str
    charge: Charge
    source_event_id: str
    correlation_id: str


BillingCommand = Annotated[UpsertAccountCommand | PostChargeCommand, Field(discriminator="kind")]
billing_command_adapter: TypeAdapter[UpsertAccountCommand | PostChargeCommand] = TypeAdapter(BillingCommand)


class JournalCommand(CanonicalModel):
    """Post a balanced group of journal lines (one source event's) to the ERP."""

    kind: Literal["journal"] = "journal"
    command_id: str
    lines: tuple[JournalLine, ...] = Field(min_length=2)
    source_event_id: str
    correlation_id: str
