"""Commands the encounter agent and the X12 ingest send to the billing, ERP and revenue dispatchers.

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
from canonical.revenue_cycle import ClaimSubmission, Coverage, EligibilityResponse, Remittance


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


class CoverageCommand(CanonicalModel):
    """Record an encounter's insurance in billing and, when asked, check it with the payer (a 270).

    The encounter agent sends it twice: on commands.billing, where billing records the coverage in order
    with the account's other commands (so claims find it), and on commands.revenue when the payer is to be
    asked, where the revenue dispatcher records it again (the same ``record_key``: billing answers the
    second a duplicate) before sending the 270, so the 271 always finds its coverage.
    """

    kind: Literal["coverage"] = "coverage"
    command_id: str
    record_key: str = Field(description="Idempotency key of billing's RecordCoverage (both copies share it)")
    coverage: Coverage
    patient: Patient | None = Field(None, description="The patient (a dependent's 270 and 837 name them)")
    facility: str = Field(description="The encounter's facility: the 270's information receiver")
    check_eligibility: bool = Field(description="Send a 270: the coverage is new or changed")
    state_version: int = Field(ge=1, description="The encounter state's version (billing keeps the newest)")
    source_event_id: str
    correlation_id: str


class ClaimsDueCommand(CanonicalModel):
    """An encounter is discharged and fully coded: billing builds its claims (then they go to the payer).

    It travels on commands.billing, behind the encounter's upserts, codings and charges on the same
    partition, so billing has the discharge, the coding and the charges when it builds the claims.
    """

    kind: Literal["claims_due"] = "claims_due"
    command_id: str
    encounter_id: str
    patient_class: str = Field("", description="PV1-2, for the 837I's CL1 admission type and source")
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
    | CoverageCommand
    | ClaimsDueCommand
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


# --------------------------------------------------------------------------------------------------
# The revenue cycle (commands.revenue)


class EligibilityAnswerCommand(CanonicalModel):
    """Record what a payer's 271 said about one coverage."""

    kind: Literal["eligibility_answer"] = "eligibility_answer"
    command_id: str
    response: EligibilityResponse
    source_event_id: str
    correlation_id: str


class SubmitClaimsCommand(CanonicalModel):
    """Claims billing built and has not sent: write the 837, validate it, send it to the payer."""

    kind: Literal["submit_claims"] = "submit_claims"
    command_id: str
    encounter_id: str
    patient_class: str = Field("", description="PV1-2, for the 837I's CL1 admission type and source")
    submissions: tuple[ClaimSubmission, ...] = Field(min_length=1)
    source_event_id: str
    correlation_id: str


class RemittanceCommand(CanonicalModel):
    """Post one 835 in billing, then its summarized journals in the ERP."""

    kind: Literal["remittance"] = "remittance"
    command_id: str
    remittance: Remittance
    source_event_id: str
    correlation_id: str


class ClaimAckCommand(CanonicalModel):
    """A 999 or TA1 about an 837 hcsync sent: the claims it carried are accepted or rejected."""

    kind: Literal["claim_ack"] = "claim_ack"
    command_id: str
    receiver_id: str = Field(description="ISA08 the 837 went to: whose acknowledgment this is")
    interchange_control: str = Field("", description="The 837's ISA13 (a TA1's TA101)")
    group_control: str = Field("", description="The 837's GS06 (a 999's AK102)")
    set_control: str = Field("", description="The 837's ST02 (a 999's AK202); empty for the whole group")
    event: Literal["accepted", "accepted_with_errors", "rejected", "interchange_rejected"]
    ack_code: str = Field("", description="IK501, AK901 or TA104")
    error_text: str = Field("", description="The IK3/IK4 codes found in our 837 (no PHI)")
    occurred_at: AwareDatetime
    source_event_id: str
    correlation_id: str


RevenueCommandT = (
    CoverageCommand | EligibilityAnswerCommand | SubmitClaimsCommand | RemittanceCommand | ClaimAckCommand
)
RevenueCommand = Annotated[RevenueCommandT, Field(discriminator="kind")]
revenue_command_adapter: TypeAdapter[RevenueCommandT] = TypeAdapter(RevenueCommand)
