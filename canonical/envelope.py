"""The event envelope: what travels on events.canonical, one per business event."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from canonical.models import (
    AccountMove,
    CanonicalModel,
    Charge,
    CodingUpdate,
    Encounter,
    MedicationAdministration,
    MedicationOrder,
    Patient,
    PatientMerge,
)
from canonical.phi import PhiField
from canonical.revenue_cycle import Coverage

# 1.1 added event types, payloads and optional fields; every 1.0 document is still a valid 1.1 document.
# 1.2 added the optional ERP dimensions of an event (master-data enrichment) and more contract models.
# 1.3 added pending ADT events, patient updates and account moves, and coding in merge mode (BAR^P12, DFT).
# 1.4 added the X12 revenue-cycle parties, the eligibility inquiry and answer (270/271), and an encounter
# event's coverages (HL7 IN1).
# See docs/schema-compatibility.md.
SCHEMA_VERSION = "1.4"


class EventType(StrEnum):
    """Business events hcsync derives from source messages."""

    ENCOUNTER_PREADMITTED = "encounter.preadmitted"  # ADT^A05
    ENCOUNTER_REGISTERED = "encounter.registered"  # ADT^A04
    ENCOUNTER_ADMITTED = "encounter.admitted"  # ADT^A01
    ENCOUNTER_TRANSFERRED = "encounter.transferred"  # ADT^A02
    ENCOUNTER_DISCHARGED = "encounter.discharged"  # ADT^A03
    ENCOUNTER_TO_INPATIENT = "encounter.to_inpatient"  # ADT^A06 outpatient becomes inpatient
    ENCOUNTER_TO_OUTPATIENT = "encounter.to_outpatient"  # ADT^A07 inpatient becomes outpatient
    ENCOUNTER_UPDATED = "encounter.updated"  # ADT^A08
    ENCOUNTER_CANCELLED = "encounter.cancelled"  # ADT^A11 cancel admit / visit
    TRANSFER_CANCELLED = "encounter.transfer_cancelled"  # ADT^A12
    DISCHARGE_CANCELLED = "encounter.discharge_cancelled"  # ADT^A13
    ADMIT_PENDING = "encounter.admit_pending"  # ADT^A14: recorded, no status of its own
    TRANSFER_PENDING = "encounter.transfer_pending"  # ADT^A15: recorded, no status of its own
    DISCHARGE_PENDING = "encounter.discharge_pending"  # ADT^A16: recorded, no status of its own
    PENDING_DISCHARGE_CANCELLED = "encounter.pending_discharge_cancelled"  # ADT^A25
    PENDING_TRANSFER_CANCELLED = "encounter.pending_transfer_cancelled"  # ADT^A26
    PENDING_ADMIT_CANCELLED = "encounter.pending_admit_cancelled"  # ADT^A27
    PATIENT_ADDED = "patient.added"  # ADT^A28 add person information
    PATIENT_UPDATED = "patient.updated"  # ADT^A31 update person information
    PATIENT_MERGED = "patient.merged"  # ADT^A40
    ACCOUNT_MOVED = "patient.account_moved"  # ADT^A44 move account information
    VISIT_MOVED = "patient.visit_moved"  # ADT^A45 move visit information
    ACCOUNT_OPENED = "account.opened"  # BAR^P01
    ACCOUNT_UPDATED = "account.updated"  # BAR^P05
    ACCOUNT_ENDED = "account.ended"  # BAR^P06
    CODING_UPDATED = "coding.updated"  # BAR^P01/P05/P06/P12 and DFT^P03/P11 DG1, PR1 and DRG
    CHARGE_POSTED = "charge.posted"  # DFT^P03/P11 FT1 with FT1-6 = CG
    CHARGE_CREDITED = "charge.credited"  # DFT^P03/P11 FT1 with FT1-6 = CD, or a CG with a negative amount
    MEDICATION_ORDERED = "medication.ordered"  # RDE^O11
    MEDICATION_ADMINISTERED = "medication.administered"  # RAS^O17, one per RXA


class SourceSystem(StrEnum):
    """The standard a source message arrived in."""

    HL7V2 = "hl7v2"


class CoverageWarning(CanonicalModel):
    """An IN1 that was read but not kept as a coverage, and why; it holds no PHI (no member id, no name).

    hcsync keeps at most three coverages per visit (primary, secondary, tertiary: what an 837 bills and what
    `Coverage.priority` holds); an IN1 beyond them is valid HL7, so it does not refuse the message, but it
    is not dropped silently either: the event says which IN1 was left out and why.
    """

    rule: str = Field(min_length=1, description="Why it was left out: HL7-IN1-22-RANGE or HL7-IN1-EXTRA")
    reason: str = Field(min_length=1, description="Message, segment, field, position and reason, in one line")
    field: str = Field(description="The IN1 field the rule is about, e.g. IN1-22")
    position: int = Field(ge=0, description="Index of the IN1 segment in its message (MSH is 0)")
    payer_id: str = Field("", description="IN1-3.1 insurance company id of the IN1 left out")


class EncounterPayload(CanonicalModel):
    """Payload of an ADT or BAR account event: who, which visit and, when the message says, its insurance.

    ``coverages`` empty means the message said nothing about insurance (no IN1, or a trigger whose IN1
    hcsync does not read), not that the visit is self-pay: a reader is to keep the coverages it was last
    told rather than clear them.
    """

    kind: Literal["encounter"] = "encounter"
    patient: Patient
    encounter: Encounter
    coverages: tuple[Coverage, ...] = Field(
        (),
        max_length=3,
        description="IN1 segments of ADT^A01/A04/A05/A06/A07/A08 and BAR^P01/P05, by priority (1 primary)",
    )
    coverage_warnings: tuple[CoverageWarning, ...] = Field(
        (), description="IN1 segments read but not kept (beyond the tertiary coverage), and why"
    )


class ChargePayload(CanonicalModel):
    """Payload of a charge event: the FT1 line and the visit it belongs to."""

    kind: Literal["charge"] = "charge"
    charge: Charge
    encounter: Encounter
    patient: Patient | None = None


class CodingPayload(CanonicalModel):
    """Payload of a coding update: the encounter's diagnoses, procedures and DRG."""

    kind: Literal["coding"] = "coding"
    coding: CodingUpdate
    encounter: Encounter


class MedicationOrderPayload(CanonicalModel):
    """Payload of a verified medication order."""

    kind: Literal["medication_order"] = "medication_order"
    order: MedicationOrder
    encounter: Encounter


class MedicationAdministrationPayload(CanonicalModel):
    """Payload of one medication administration (one RXA)."""

    kind: Literal["medication_administration"] = "medication_administration"
    administration: MedicationAdministration
    encounter: Encounter


class MergePayload(CanonicalModel):
    """Payload of a patient merge; it is keyed by the surviving patient, not by an encounter."""

    kind: Literal["merge"] = "merge"
    merge: PatientMerge


class PatientPayload(CanonicalModel):
    """Payload of a person update (ADT^A28, A31); it is keyed by the patient, not by an encounter."""

    kind: Literal["patient"] = "patient"
    patient: Patient


class AccountMovePayload(CanonicalModel):
    """Payload of an account or visit move (ADT^A44, A45); it is keyed by the patient it moves to."""

    kind: Literal["account_move"] = "account_move"
    move: AccountMove


Payload = Annotated[
    EncounterPayload
    | ChargePayload
    | CodingPayload
    | MedicationOrderPayload
    | MedicationAdministrationPayload
    | MergePayload
    | PatientPayload
    | AccountMovePayload,
    Field(discriminator="kind"),
]


class ErpDimensions(CanonicalModel):
    """Where an event lands in the ERP, resolved from master data by the transform actors. No PHI.

    Set on every event of an encounter (the encounter's facility and department) and, for charges and
    medication doses, from the line's own facility and department, charge code and item.
    """

    masterdata_version: str = Field(
        min_length=1, description="Master-data version the event was enriched with"
    )
    legal_entity: str = Field(min_length=1, description="Legal entity of the facility")
    business_unit: str = Field(min_length=1, description="Business unit of the facility")
    cost_centre: str = Field("", description="Cost centre of the department; empty when none was sent")
    department: str = Field("", description="Department code the point of care or department resolved to")
    receivables_account: str = Field("", description="Legal entity's receivables account (charges)")
    revenue_account: str = Field("", description="Charge code's revenue account (charges)")
    inventory_account: str = Field("", description="Item's inventory GL account (supplies and doses)")
    unit_cost_cents: int | None = Field(
        None, ge=0, description="Item's standard unit cost (supplies and doses)"
    )


class EventEnvelope(CanonicalModel):
    """One canonical event with the provenance needed to trace it back to its source message."""

    event_id: str = Field(description="uuid5(sender, control id, position): deterministic")
    correlation_id: str = Field(description="uuid5(sender, control id): shared by one message's events")
    encounter_id: str = Field(
        min_length=1,
        description="Partition key of events.canonical: the encounter id, or 'patient:' authority ':' MRN "
        "for patient-level events (merges, person updates, account and visit moves)",
    )
    source_system: SourceSystem
    source_sender: str = Field(description="MSH-3.1 '^' MSH-4.1")
    source_message_id: str = Field(description="MSH-10 message control id")
    source_message_type: str = Field("", description="MSH-9.1 '^' MSH-9.2, e.g. ADT^A02 (drill-down)")
    source_position: int = Field(ge=0, description="Index of this event within its source message")
    event_type: EventType
    occurred_at: AwareDatetime = Field(description="EVN-2, else MSH-7")
    schema_version: str = SCHEMA_VERSION
    payload: Payload
    dimensions: ErpDimensions | None = Field(
        None, description="ERP dimensions from master data; set by enrichment before billing and ERP see it"
    )


class MessageReceipt(CanonicalModel):
    """A valid message with no financial effect (ORU, ORM, SIU, MDM...), recorded and routed as it came.

    It goes to routed.hl7v2 keyed by its encounter where one is known. The original bytes are PHI, like
    every raw topic; the receipt's other fields are not.
    """

    source_system: SourceSystem = SourceSystem.HL7V2
    source_sender: str = Field(description="MSH-3.1 '^' MSH-4.1")
    source_message_id: str = Field(description="MSH-10 message control id")
    source_message_type: str = Field(description="MSH-9.1 '^' MSH-9.2, e.g. ORU^R01")
    version: str = Field("", description="MSH-12 HL7 version")
    encounter_id: str | None = Field(None, description="PV1-19 encounter id, when the message has one")
    original_b64: str = PhiField(description="The message exactly as received, base64 (PHI: raw message)")
