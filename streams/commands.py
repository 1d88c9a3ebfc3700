"""Commands the encounter agent sends to the billing and ERP dispatchers.

Each command carries ``command_id``, a deterministic idempotency key derived from the event that caused
it, so a replayed event produces the same command and the sink recognises it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from canonical.models import (
    AccountMove,
    CanonicalModel,
    Charge,
    CodingUpdate,
    Encounter,
    EncounterStatus,
    InventoryMovement,
    JournalLine,
    Patient,
    PatientMerge,
)


class UpsertAccountCommand(CanonicalModel):
    """Create or update the billing account of an encounter."""

    kind: Literal["upsert_account"] = "upsert_account"
    command_id: str
    encounter: Encounter
    patient: Patient | None
    status: EncounterStatus
    state_version: int = Field(
        0, ge=0, description="Events the encounter table had applied: billing keeps the highest version"
    )
    snapshot_at: AwareDatetime | None = Field(
        None,
        description="occurred_at of the encounter snapshot the patient comes from: billing keeps a later "
        "person update or move over it (None: unknown, as written before 1.3)",
    )
    source_event_id: str
    correlation_id: str


class PostChargeCommand(CanonicalModel):
    """Post one charge (or credit) line to billing."""

    kind: Literal["post_charge"] = "post_charge"
    command_id: str
    charge: Charge
    source_event_id: str
    correlation_id: str


class UpdateCodingCommand(CanonicalModel):
    """Replace the coding (diagnoses, procedures, DRG) of an encounter's billing account."""

    kind: Literal["update_coding"] = "update_coding"
    command_id: str
    coding: CodingUpdate
    coded_at: str = Field(description="ISO time of the source event: billing keeps the latest coding")
    source_event_id: str
    correlation_id: str


class MergePatientCommand(CanonicalModel):
    """Move every billing account of the prior patient identifier to the surviving patient."""

    kind: Literal["merge_patient"] = "merge_patient"
    command_id: str
    merge: PatientMerge
    source_event_id: str
    correlation_id: str


class UpdatePatientCommand(CanonicalModel):
    """Put a person's demographics on every billing account of the patient (ADT^A28, A31)."""

    kind: Literal["update_patient"] = "update_patient"
    command_id: str
    patient: Patient
    updated_at: AwareDatetime = Field(description="occurred_at of the update: billing keeps the latest")
    source_event_id: str
    correlation_id: str


class MoveAccountCommand(CanonicalModel):
    """Move an account or a visit of the prior patient to another patient (ADT^A44, A45)."""

    kind: Literal["move_account"] = "move_account"
    command_id: str
    move: AccountMove
    moved_at: AwareDatetime = Field(
        description="occurred_at of the move: of two moves, billing keeps the later"
    )
    source_event_id: str
    correlation_id: str


PatientCommandT = MergePatientCommand | UpdatePatientCommand | MoveAccountCommand
BillingCommandT = (
    UpsertAccountCommand
    | PostChargeCommand
    | UpdateCodingCommand
    | MergePatientCommand
    | UpdatePatientCommand
    | MoveAccountCommand
)
BillingCommand = Annotated[BillingCommandT, Field(discriminator="kind")]
billing_command_adapter: TypeAdapter[BillingCommandT] = TypeAdapter(BillingCommand)


class JournalCommand(CanonicalModel):
    """Post a balanced group of journal lines (one source event's) to the ERP."""

    kind: Literal["journal"] = "journal"
    command_id: str
    lines: tuple[JournalLine, ...] = Field(min_length=2)
    source_event_id: str
    correlation_id: str


class InventoryCommand(CanonicalModel):
    """Record stock consumed (or returned) by one source event in the ERP's inventory."""

    kind: Literal["inventory"] = "inventory"
    command_id: str
    movements: tuple[InventoryMovement, ...] = Field(min_length=1)
    source_event_id: str
    correlation_id: str


ErpCommandT = JournalCommand | InventoryCommand
ErpCommand = Annotated[ErpCommandT, Field(discriminator="kind")]
erp_command_adapter: TypeAdapter[ErpCommandT] = TypeAdapter(ErpCommand)
