"""Build adapter messages from canonical models.

Billing: Encounter and Patient to an Account, Charge, CodingUpdate to an UpdateCodingRequest,
PatientMerge to a MergePatientRequest, Patient to an UpdatePatientRequest, AccountMove to a
MoveAccountRequest. ERP: JournalLine and InventoryMovement, which carry no PHI.
"""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from canonical.models import (
    AccountMove,
    Charge,
    CodingMode,
    CodingUpdate,
    Diagnosis,
    Drg,
    Encounter,
    EncounterStatus,
    InventoryMovement,
    JournalLine,
    MoveScope,
    Patient,
    PatientMerge,
    Procedure,
)
from proto import billing_pb2, erp_pb2

__all__ = [
    "account_from",
    "aware_datetime",
    "charge_from",
    "coding_request_from",
    "inventory_movement_from",
    "journal_line_from",
    "merge_request_from",
    "move_request_from",
    "patient_from",
    "patient_update_request_from",
]


def _timestamp(value: dt.datetime) -> Timestamp:
    """Return ``value`` (timezone-aware, as canonical models guarantee) as a UTC Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def aware_datetime(value: str, field: str) -> dt.datetime:
    """Parse an ISO 8601 date-time that names its offset; raise ValueError naming ``field`` otherwise."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        # A local time without its offset cannot be ordered against the others: refuse, do not guess.
        raise ValueError(f"{field}: {value!r} has no UTC offset")
    return parsed


def account_from(
    encounter: Encounter,
    patient: Patient | None,
    status: str,
    source_event_id: str,
    correlation_id: str,
    *,
    state_version: int = 0,
    patient_as_of: dt.datetime | None = None,
) -> billing_pb2.Account:
    """Build the billing account of an encounter; ``status`` is an EncounterStatus value.

    ``patient_as_of`` is when the patient's demographics were true (the encounter snapshot's time).
    """
    # Refuse a bad status here, where the caller's bug is, rather than as INVALID_ARGUMENT from the server.
    account = billing_pb2.Account(
        encounter_id=encounter.encounter_id,
        facility=encounter.facility,
        department=encounter.department,
        patient_class=encounter.patient_class.value,
        status=EncounterStatus(status).value,
        attending_provider_id=encounter.attending_provider_id,
        source_event_id=source_event_id,
        correlation_id=correlation_id,
        state_version=state_version,
        account_number=encounter.account_number,
    )
    if patient_as_of is not None:
        account.patient_as_of.CopyFrom(_timestamp(patient_as_of))
    if patient is not None:
        account.mrn = patient.mrn
        account.assigning_authority = patient.assigning_authority
        account.family_name = patient.family_name
        account.given_name = patient.given_name
        if patient.birth_date is not None:
            account.birth_date = patient.birth_date.isoformat()
    if encounter.admitted_at is not None:
        account.admitted_at.CopyFrom(_timestamp(encounter.admitted_at))
    if encounter.discharged_at is not None:
        account.discharged_at.CopyFrom(_timestamp(encounter.discharged_at))
    return account


def charge_from(charge: Charge, source_event_id: str, correlation_id: str) -> billing_pb2.Charge:
    """Build the billing charge line of a canonical charge (credits keep their negative amount)."""
    message = billing_pb2.Charge(
        charge_id=charge.charge_id,
        encounter_id=charge.encounter_id,
        transaction_id=charge.transaction_id,
        transaction_type=charge.transaction_type.value,
        charge_code=charge.charge_code,
        code_system=charge.code_system,
        description=charge.description,
        quantity=charge.quantity,
        amount_cents=charge.amount_cents,
        currency=charge.currency,
        service_at=_timestamp(charge.service_at),
        facility=charge.facility,
        department=charge.department,
        source_event_id=source_event_id,
        correlation_id=correlation_id,
        procedure_code=charge.procedure_code,
        ndc_code=charge.ndc_code,
        is_supply=charge.is_supply,
        filler_order_number=charge.filler_order_number,
    )
    # Optional on the wire too, so an unknown price or cost is not mistaken for a free item.
    if charge.unit_amount_cents is not None:
        message.unit_amount_cents = charge.unit_amount_cents
    if charge.unit_cost_cents is not None:
        message.unit_cost_cents = charge.unit_cost_cents
    return message


def patient_from(patient: Patient) -> billing_pb2.Patient:
    """Build the billing patient of a canonical one (PHI: billing only, never the ERP)."""
    return billing_pb2.Patient(
        mrn=patient.mrn,
        assigning_authority=patient.assigning_authority,
        family_name=patient.family_name,
        given_name=patient.given_name,
        birth_date=patient.birth_date.isoformat() if patient.birth_date is not None else "",
    )


def _diagnosis_from(diagnosis: Diagnosis) -> billing_pb2.Diagnosis:
    message = billing_pb2.Diagnosis(
        sequence=diagnosis.sequence,
        code=diagnosis.code,
        description=diagnosis.description,
        code_system=diagnosis.code_system,
        diagnosis_type=diagnosis.diagnosis_type,
        identifier=diagnosis.identifier,
        action=diagnosis.action.value if diagnosis.action is not None else "",
    )
    if diagnosis.priority is not None:
        message.priority = diagnosis.priority
    if diagnosis.diagnosed_at is not None:
        message.diagnosed_at.CopyFrom(_timestamp(diagnosis.diagnosed_at))
    return message


def _procedure_from(procedure: Procedure) -> billing_pb2.Procedure:
    message = billing_pb2.Procedure(
        sequence=procedure.sequence,
        code=procedure.code,
        description=procedure.description,
        code_system=procedure.code_system,
        surgeon_id=procedure.surgeon_id,
        identifier=procedure.identifier,
        action=procedure.action.value if procedure.action is not None else "",
    )
    if procedure.priority is not None:
        message.priority = procedure.priority
    if procedure.performed_at is not None:
        message.performed_at.CopyFrom(_timestamp(procedure.performed_at))
    return message


def _drg_from(drg: Drg) -> billing_pb2.Drg:
    message = billing_pb2.Drg(code=drg.code, description=drg.description, code_system=drg.code_system)
    if drg.assigned_at is not None:
        message.assigned_at.CopyFrom(_timestamp(drg.assigned_at))
    return message


def coding_request_from(
    coding: CodingUpdate,
    coded_at: dt.datetime,
    idempotency_key: str,
    source_event_id: str,
    correlation_id: str,
) -> billing_pb2.UpdateCodingRequest:
    """Build the UpdateCoding request of an encounter's coding as of ``coded_at`` (timezone-aware)."""
    request = billing_pb2.UpdateCodingRequest(
        idempotency_key=idempotency_key,
        encounter_id=coding.encounter_id,
        coded_at=_timestamp(coded_at),
        diagnoses=[_diagnosis_from(diagnosis) for diagnosis in coding.diagnoses],
        procedures=[_procedure_from(procedure) for procedure in coding.procedures],
        source_event_id=source_event_id,
        correlation_id=correlation_id,
        mode=(
            billing_pb2.UpdateCodingRequest.MERGE
            if coding.mode is CodingMode.MERGE
            else billing_pb2.UpdateCodingRequest.REPLACE
        ),
    )
    if coding.drg is not None:
        request.drg.CopyFrom(_drg_from(coding.drg))
    return request


def merge_request_from(
    merge: PatientMerge, idempotency_key: str, source_event_id: str, correlation_id: str
) -> billing_pb2.MergePatientRequest:
    """Build the MergePatient request of an ADT^A40 merge (PHI: billing only)."""
    return billing_pb2.MergePatientRequest(
        idempotency_key=idempotency_key,
        prior_mrn=merge.prior_mrn,
        prior_assigning_authority=merge.prior_assigning_authority,
        prior_account_number=merge.prior_account_number,
        prior_visit_number=merge.prior_visit_number,
        surviving=patient_from(merge.surviving),
        source_event_id=source_event_id,
        correlation_id=correlation_id,
    )


def patient_update_request_from(
    patient: Patient, updated_at: dt.datetime, idempotency_key: str, source_event_id: str, correlation_id: str
) -> billing_pb2.UpdatePatientRequest:
    """Build the UpdatePatient request of an ADT^A28/A31 person update as of ``updated_at`` (PHI: billing)."""
    return billing_pb2.UpdatePatientRequest(
        idempotency_key=idempotency_key,
        patient=patient_from(patient),
        updated_at=_timestamp(updated_at),
        source_event_id=source_event_id,
        correlation_id=correlation_id,
    )


def move_request_from(
    move: AccountMove, moved_at: dt.datetime, idempotency_key: str, source_event_id: str, correlation_id: str
) -> billing_pb2.MoveAccountRequest:
    """Build the MoveAccount request of an ADT^A44/A45 move as of ``moved_at`` (PHI: billing only)."""
    scope = billing_pb2.MoveAccountRequest.Scope
    return billing_pb2.MoveAccountRequest(
        idempotency_key=idempotency_key,
        scope=scope.ACCOUNT if move.scope is MoveScope.ACCOUNT else scope.VISIT,
        prior_mrn=move.prior_mrn,
        prior_assigning_authority=move.prior_assigning_authority,
        prior_account_number=move.prior_account_number,
        prior_visit_number=move.prior_visit_number,
        encounter_id=move.encounter_id,
        target=patient_from(move.target),
        moved_at=_timestamp(moved_at),
        source_event_id=source_event_id,
        correlation_id=correlation_id,
    )


def journal_line_from(line: JournalLine) -> erp_pb2.JournalLine:
    """Build the ERP journal line of a canonical one; it carries no PHI, only the encounter_ref pseudonym."""
    return erp_pb2.JournalLine(
        line_id=line.line_id,
        journal_date=line.journal_date.isoformat(),
        account=line.account,
        cost_centre=line.cost_centre,
        facility=line.facility,
        legal_entity=line.legal_entity,
        business_unit=line.business_unit,
        debit_cents=line.debit_cents,
        credit_cents=line.credit_cents,
        currency=line.currency,
        encounter_ref=line.encounter_ref,
        source_event_id=line.source_event_id,
        correlation_id=line.correlation_id,
        description=line.description,
    )


def inventory_movement_from(movement: InventoryMovement) -> erp_pb2.InventoryMovement:
    """Build the ERP inventory movement of a canonical one: no PHI, no free text, the day but not the time."""
    message = erp_pb2.InventoryMovement(
        movement_id=movement.movement_id,
        movement_type=movement.movement_type.value,
        item_code=movement.item_code,
        code_system=movement.code_system,
        # Not the canonical description: it is the message's free text (FT1-7.2, RXA-5.2), which may carry
        # anything. The ERP refuses free text and writes the item master's description itself.
        description="",
        quantity_milli=movement.quantity_milli,
        unit=movement.unit,
        facility=movement.facility,
        cost_centre=movement.cost_centre,
        legal_entity=movement.legal_entity,
        business_unit=movement.business_unit,
        inventory_account=movement.inventory_account,
        # The local day of the movement, as journal_date is the local day of the charge.
        movement_date=movement.occurred_at.date().isoformat(),
        encounter_ref=movement.encounter_ref,
        source_event_id=movement.source_event_id,
        correlation_id=movement.correlation_id,
    )
    # Optional on the wire too, so an item without a standard cost is not mistaken for a free one.
    if movement.unit_cost_cents is not None:
        message.unit_cost_cents = movement.unit_cost_cents
    return message
