"""The billing tables, and the step that brings a database written by an earlier release up to date.

New tables are created; a column added to an existing table since is added with its server default,
so a previous SQLite or PostgreSQL database opens as it is. Columns are never dropped or retyped.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import (
    BigInteger,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from foundation.sql import create_schema as migrate
from foundation.sql import total

__all__ = [
    "AccountRow",
    "AccountUpsertRow",
    "Base",
    "ChargeBatchRow",
    "ChargeRow",
    "ClaimAdjustmentRow",
    "ClaimEventRow",
    "ClaimPaymentRow",
    "ClaimRow",
    "CodingRemovalRow",
    "CodingRow",
    "CodingUpdateRow",
    "CoverageRow",
    "DiagnosisRow",
    "EligibilityRow",
    "HeldChargeRow",
    "MergeRow",
    "MoveRow",
    "PatientRow",
    "PatientUpdateRow",
    "ProcedureRow",
    "ProviderAdjustmentRow",
    "RemittanceRow",
    "RevenueRequestRow",
    "create_schema",
    "total",
]

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    """Declarative base of the billing tables."""

    # Cents and counts outgrow 32-bit integers (a PostgreSQL INTEGER) at $21M.
    type_annotation_map = {
        int: BigInteger,
        dt.datetime: DateTime(timezone=True),
        str: String(),
        bytes: LargeBinary,
    }


class AccountRow(Base):
    """A patient account; the account id is the encounter id."""

    __tablename__ = "billing_accounts"

    account_id: Mapped[str] = mapped_column(primary_key=True)
    facility: Mapped[str]
    department: Mapped[str]
    patient_class: Mapped[str]
    status: Mapped[str] = mapped_column(index=True)
    mrn: Mapped[str]
    family_name: Mapped[str]
    given_name: Mapped[str]
    birth_date: Mapped[dt.date | None]
    admitted_at: Mapped[dt.datetime | None]
    discharged_at: Mapped[dt.datetime | None]
    attending_provider_id: Mapped[str]
    source_event_id: Mapped[str]
    correlation_id: Mapped[str]
    version: Mapped[int]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    # Added in 1.1: server defaults let an earlier database gain them (see create_schema).
    assigning_authority: Mapped[str] = mapped_column(server_default="")
    state_version: Mapped[int] = mapped_column(server_default="0")
    merged_by: Mapped[str] = mapped_column(server_default="")  # key of the merge that last moved it
    # Added in 1.3.
    account_number: Mapped[str] = mapped_column(server_default="", index=True)  # PID-18.1
    # Event time of the stored names and birth date (the encounter's snapshot, a person update, a move).
    demographics_at: Mapped[dt.datetime | None]
    moved_by: Mapped[str] = mapped_column(server_default="")  # key of the move that last moved it
    # Event time of the patient the account is under: the move it follows, or an upsert that named its
    # patient after that move. NULL: never moved, so any move of it is later.
    owner_at: Mapped[dt.datetime | None]


class AccountUpsertRow(Base):
    """One applied UpsertAccount call, kept so a replay of its key returns the original version."""

    __tablename__ = "billing_account_upserts"

    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("billing_accounts.account_id"), index=True)
    status: Mapped[str]
    version: Mapped[int]
    request_digest: Mapped[str]
    received_at: Mapped[dt.datetime]
    # The event whose state the upsert carried: the same key from another event is a reused key.
    source_event_id: Mapped[str] = mapped_column(default="", server_default="")


class ChargeRow(Base):
    """One posted charge, credit or reversal line."""

    __tablename__ = "billing_charges"

    charge_id: Mapped[str] = mapped_column(primary_key=True)
    posting_id: Mapped[str] = mapped_column(unique=True)
    encounter_id: Mapped[str] = mapped_column(ForeignKey("billing_accounts.account_id"), index=True)
    transaction_id: Mapped[str]
    transaction_type: Mapped[str]
    charge_code: Mapped[str]
    code_system: Mapped[str]
    description: Mapped[str]
    quantity: Mapped[int]
    unit_amount_cents: Mapped[int | None]
    amount_cents: Mapped[int]
    currency: Mapped[str]
    service_at: Mapped[dt.datetime]
    facility: Mapped[str] = mapped_column(index=True)
    department: Mapped[str]
    source_event_id: Mapped[str]
    correlation_id: Mapped[str]
    request_key: Mapped[str]
    posted_at: Mapped[dt.datetime]
    # Added in 1.1.
    procedure_code: Mapped[str] = mapped_column(server_default="")
    ndc_code: Mapped[str] = mapped_column(server_default="")
    is_supply: Mapped[bool] = mapped_column(server_default=false())
    filler_order_number: Mapped[str] = mapped_column(server_default="")
    unit_cost_cents: Mapped[int | None]


class ChargeBatchRow(Base):
    """One PostCharges call: its key and a digest of its charges, so a reused key is told from a replay.

    Added in 1.4; a database without it gets it at open (create_schema). Its charges are judged again on
    a replay (each is idempotent on its charge_id), so a charge refused for a missing account goes through
    once the account exists.
    """

    __tablename__ = "billing_charge_batches"

    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    request_digest: Mapped[str]
    charge_count: Mapped[int]
    received_at: Mapped[dt.datetime]


class HeldChargeRow(Base):
    """A credit or reversal waiting for its original: not in the books (nor the totals) until the account's
    charges of its charge code cover it, then moved to billing_charges. Added in 1.4."""

    __tablename__ = "billing_held_charges"
    __table_args__ = (Index("ix_billing_held_charges_account_code", "encounter_id", "charge_code"),)

    charge_id: Mapped[str] = mapped_column(primary_key=True)
    encounter_id: Mapped[str] = mapped_column(ForeignKey("billing_accounts.account_id"))
    charge_code: Mapped[str]
    amount_cents: Mapped[int]
    request_key: Mapped[str]  # the PostCharges call that brought it
    charge: Mapped[bytes]  # the Charge message as received, posted as is once covered
    held_at: Mapped[dt.datetime]


class CodingRow(Base):
    """The current coding of one encounter. No foreign key: coding may arrive before the account."""

    __tablename__ = "billing_codings"

    encounter_id: Mapped[str] = mapped_column(primary_key=True)
    coded_at: Mapped[dt.datetime]  # the latest coding applied, full or merged
    drg_code: Mapped[str | None]
    drg_description: Mapped[str]
    drg_code_system: Mapped[str]
    drg_assigned_at: Mapped[dt.datetime | None]
    version: Mapped[int]
    source_event_id: Mapped[str]
    correlation_id: Mapped[str]
    updated_at: Mapped[dt.datetime]
    # Added in 1.3. Before, every coding was a full one, so coded_at was the time of the full coding.
    replaced_at: Mapped[dt.datetime | None]  # time of the full coding in force (REPLACE)
    full_coding: Mapped[bool] = mapped_column(server_default=true())  # False: merges only so far
    drg_as_of: Mapped[dt.datetime | None]  # when the stored DRG (or its absence) was last written


class DiagnosisRow(Base):
    """One diagnosis of an encounter's current coding, at its position in the source's list."""

    __tablename__ = "billing_diagnoses"

    encounter_id: Mapped[str] = mapped_column(ForeignKey("billing_codings.encounter_id"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int]
    code: Mapped[str] = mapped_column(index=True)
    description: Mapped[str]
    code_system: Mapped[str]
    diagnosis_type: Mapped[str]
    priority: Mapped[int | None]
    diagnosed_at: Mapped[dt.datetime | None]
    # Added in 1.3: DG1-20, and when the item was last written (NULL: by the full coding in force).
    identifier: Mapped[str] = mapped_column(server_default="")
    as_of: Mapped[dt.datetime | None]


class ProcedureRow(Base):
    """One procedure of an encounter's current coding, at its position in the source's list."""

    __tablename__ = "billing_procedures"

    encounter_id: Mapped[str] = mapped_column(ForeignKey("billing_codings.encounter_id"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int]
    code: Mapped[str] = mapped_column(index=True)
    description: Mapped[str]
    code_system: Mapped[str]
    performed_at: Mapped[dt.datetime | None]
    priority: Mapped[int | None]
    surgeon_id: Mapped[str]
    # Added in 1.3: PR1-19, and when the item was last written (NULL: by the full coding in force).
    identifier: Mapped[str] = mapped_column(server_default="")
    as_of: Mapped[dt.datetime | None]


class CodingRemovalRow(Base):
    """A diagnosis or procedure a merge deleted (action D), kept so an older add arriving late stays out."""

    __tablename__ = "billing_coding_removals"

    encounter_id: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(primary_key=True)  # diagnosis | procedure
    item: Mapped[str] = mapped_column(primary_key=True)  # "id:" identifier, else "code:" code
    as_of: Mapped[dt.datetime]


class CodingUpdateRow(Base):
    """One UpdateCoding call and its outcome, so a replay of its key is recognised."""

    __tablename__ = "billing_coding_updates"

    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    encounter_id: Mapped[str] = mapped_column(index=True)
    status: Mapped[str]
    version: Mapped[int]
    request_digest: Mapped[str]
    received_at: Mapped[dt.datetime]


class MergeRow(Base):
    """One patient merge: kept so accounts upserted later under the prior identifier move too."""

    __tablename__ = "billing_patient_merges"

    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    prior_mrn: Mapped[str] = mapped_column(index=True)
    prior_assigning_authority: Mapped[str]
    prior_account_number: Mapped[str]
    prior_visit_number: Mapped[str]
    surviving_mrn: Mapped[str]
    surviving_assigning_authority: Mapped[str]
    surviving_family_name: Mapped[str]
    surviving_given_name: Mapped[str]
    surviving_birth_date: Mapped[dt.date | None]
    accounts_moved: Mapped[int]
    source_event_id: Mapped[str]
    correlation_id: Mapped[str]
    request_digest: Mapped[str]
    received_at: Mapped[dt.datetime]


class PatientRow(Base):
    """The latest person update (ADT^A28, A31) of one patient identifier: what later accounts get too."""

    __tablename__ = "billing_patients"

    mrn: Mapped[str] = mapped_column(primary_key=True)
    assigning_authority: Mapped[str] = mapped_column(primary_key=True)
    family_name: Mapped[str]
    given_name: Mapped[str]
    birth_date: Mapped[dt.date | None]
    updated_at: Mapped[dt.datetime]  # the event time of the update
    idempotency_key: Mapped[str]
    source_event_id: Mapped[str]
    correlation_id: Mapped[str]


class PatientUpdateRow(Base):
    """One UpdatePatient call and its outcome, so a replay of its key is recognised."""

    __tablename__ = "billing_patient_updates"

    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    status: Mapped[str]
    accounts_updated: Mapped[int]
    request_digest: Mapped[str]
    received_at: Mapped[dt.datetime]


class MoveRow(Base):
    """One account or visit move (ADT^A44, A45): kept so an account upserted later follows it."""

    __tablename__ = "billing_account_moves"

    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    scope: Mapped[str]  # ACCOUNT | VISIT
    prior_mrn: Mapped[str] = mapped_column(index=True)
    prior_assigning_authority: Mapped[str]
    prior_account_number: Mapped[str] = mapped_column(index=True)
    prior_visit_number: Mapped[str]
    encounter_id: Mapped[str] = mapped_column(index=True)
    target_mrn: Mapped[str]
    target_assigning_authority: Mapped[str]
    target_family_name: Mapped[str]
    target_given_name: Mapped[str]
    target_birth_date: Mapped[dt.date | None]
    moved_at: Mapped[dt.datetime]
    accounts_moved: Mapped[int]
    source_event_id: Mapped[str]
    correlation_id: Mapped[str]
    request_digest: Mapped[str]
    received_at: Mapped[dt.datetime]


# ---------------------------------------------------------------------------------------------------
# The revenue cycle (added in 1.5; adapters.billing.revenue_cycle). No foreign keys to accounts: coverage
# may arrive before its account, and a claim outlives nothing.


class RevenueRequestRow(Base):
    """One revenue-cycle call (RecordCoverage, RecordEligibility, CreateClaims, UpdateClaimStatus) and its
    answer, so a replay of its key answers DUPLICATE with the original result."""

    __tablename__ = "billing_rc_requests"

    rpc: Mapped[str] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    request_digest: Mapped[str]
    response: Mapped[bytes]  # the serialised response message
    received_at: Mapped[dt.datetime]


class CoverageRow(Base):
    """An encounter's insurance of one priority (HL7 IN1), with its current eligibility."""

    __tablename__ = "billing_coverages"

    encounter_id: Mapped[str] = mapped_column(primary_key=True)
    priority: Mapped[int] = mapped_column(primary_key=True)
    payer_id: Mapped[str] = mapped_column(index=True)
    payer_name: Mapped[str]
    plan: Mapped[str]
    member_id: Mapped[str]
    subscriber: Mapped[bytes]  # the Person message as received (PHI)
    group_number: Mapped[str]
    relationship: Mapped[str]
    effective_on: Mapped[dt.date | None]
    expires_on: Mapped[dt.date | None]
    patient_gender: Mapped[str]
    source_event_id: Mapped[str]
    correlation_id: Mapped[str]
    state_version: Mapped[int]
    version: Mapped[int]
    updated_at: Mapped[dt.datetime]
    eligibility_status: Mapped[str] = mapped_column(server_default="unknown")
    eligibility_at: Mapped[dt.datetime | None]  # checked_at or flagged_at of the current outcome
    eligibility_plan: Mapped[str] = mapped_column(server_default="")
    benefits: Mapped[bytes | None]  # the BenefitSummary message of the current outcome
    follow_up: Mapped[bool] = mapped_column(server_default=false(), index=True)
    follow_up_reason: Mapped[str] = mapped_column(server_default="")
    # PID-11, the patient's address as a PostalAddress message (PHI): an 837 names a dependent with it.
    patient_address: Mapped[bytes | None]


class EligibilityRow(Base):
    """One eligibility outcome (a 271 result or a follow-up flag): the history behind CoverageRow."""

    __tablename__ = "billing_eligibility"

    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    encounter_id: Mapped[str] = mapped_column(index=True)
    priority: Mapped[int]
    kind: Mapped[str]  # result | follow_up
    status: Mapped[str]  # active | inactive | unknown
    plan: Mapped[str]
    benefits: Mapped[bytes | None]
    trace_number: Mapped[str]
    reason: Mapped[str]  # rejection reason (AAA03) or follow-up reason and detail
    occurred_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime]


class ClaimRow(Base):
    """A claim billing built for one account and claim kind; the submission holds what an 837 needs."""

    __tablename__ = "billing_claims"

    claim_id: Mapped[str] = mapped_column(primary_key=True)
    encounter_id: Mapped[str] = mapped_column(index=True)
    claim_type: Mapped[str]
    frequency: Mapped[str]
    status: Mapped[str] = mapped_column(index=True)
    version: Mapped[int]
    facility: Mapped[str]
    legal_entity: Mapped[str]
    billing_npi: Mapped[str]
    payer_id: Mapped[str] = mapped_column(index=True)
    payer_type: Mapped[str]
    total_charge_cents: Mapped[int]
    paid_cents: Mapped[int]
    adjusted_cents: Mapped[int]
    patient_responsibility_cents: Mapped[int]
    payer_claim_control_number: Mapped[str]
    basis_digest: Mapped[str]  # of the submission as built from charges, coding and coverage
    submission: Mapped[bytes]  # the ClaimSubmission message (PHI)
    sent_interchange: Mapped[str]  # ISA13, GS06 and ST02 of the 837 that last carried it
    sent_group: Mapped[str]
    sent_set: Mapped[str]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class ClaimEventRow(Base):
    """One step of a claim's lifecycle, in order."""

    __tablename__ = "billing_claim_events"

    claim_id: Mapped[str] = mapped_column(primary_key=True)
    sequence: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str]
    status: Mapped[str]
    occurred_at: Mapped[dt.datetime]
    interchange_control_number: Mapped[str]
    group_control_number: Mapped[str]
    transaction_set_control_number: Mapped[str]
    ack_code: Mapped[str]
    error_text: Mapped[str]
    remittance_id: Mapped[str]


class RemittanceRow(Base):
    """One posted 835, by payer and TRN02 trace; the summary is the answer a replay gets."""

    __tablename__ = "billing_remittances"

    remittance_id: Mapped[str] = mapped_column(primary_key=True)
    remittance_key: Mapped[str] = mapped_column(unique=True)  # payer id | TRN02
    payer_id: Mapped[str]
    trace_number: Mapped[str]
    payment_date: Mapped[dt.date]
    total_paid_cents: Mapped[int]
    provider_adjustment_cents: Mapped[int]
    request_digest: Mapped[str]
    response: Mapped[bytes]
    posted_at: Mapped[dt.datetime]


class ClaimPaymentRow(Base):
    """One CLP of a posted 835, at its ordinal (1-based) in the 835."""

    __tablename__ = "billing_claim_payments"

    remittance_id: Mapped[str] = mapped_column(primary_key=True)
    ordinal: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[str] = mapped_column(index=True)
    clp_status: Mapped[str]
    charge_cents: Mapped[int]
    paid_cents: Mapped[int]
    patient_responsibility_cents: Mapped[int]
    payer_claim_control_number: Mapped[str]


class ClaimAdjustmentRow(Base):
    """One CAS triplet of a posted CLP: line 0 is claim level, else the 1-based SVC line."""

    __tablename__ = "billing_claim_adjustments"

    remittance_id: Mapped[str] = mapped_column(primary_key=True)
    ordinal: Mapped[int] = mapped_column(primary_key=True)
    line: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[str] = mapped_column(index=True)
    group_code: Mapped[str]
    reason_code: Mapped[str]
    amount_cents: Mapped[int]
    quantity: Mapped[int | None]


class ProviderAdjustmentRow(Base):
    """One PLB adjustment of a posted 835."""

    __tablename__ = "billing_provider_adjustments"

    remittance_id: Mapped[str] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    reason_code: Mapped[str]
    reference: Mapped[str]
    amount_cents: Mapped[int]


def create_schema(engine: Engine) -> None:
    """Create missing tables, and add to existing tables the columns a later release defined."""
    migrate(engine, Base.metadata)
