"""Build adapter messages from canonical models: Encounter and Patient to an Account, Charge, JournalLine."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from canonical.models import Charge, Encounter, EncounterStatus, JournalLine, Patient
from proto import billing_pb2, erp_pb2

__all__ = ["account_from", "charge_from", "journal_line_from"]


def _timestamp(value: dt.datetime) -> Timestamp:
    """Return ``value`` (timezone-aware, as canonical models guarantee) as a UTC Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def account_from(
    encounter: Encounter,
    patient: Patient | None,
    status: str,
    source_event_id: str,
    correlation_id: str,
) -> billing_pb2.Account:
    """Build the billing account of an encounter; ``status`` is registered, admitted or discharged."""
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
    )
    if patient is not None:
        account.mrn = patient.mrn
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
    )
    if charge.unit_amount_cents is not None:
        # Optional on the wire too, so an unknown unit price is not mistaken for a free item.
        message.unit_amount_cents = charge.unit_amount_cents
    return message


def journal_line_from(line: JournalLine) -> erp_pb2.JournalLine:
    """Build the ERP journal line of a canonical one; it carries no PHI, only the encounter_ref pseudonym."""
    return erp_pb2.JournalLine(
        line_id=line.line_id,
        journal_date=line.journal_date.isoformat(),
        account=line.account,
        cost_centre=line.cost_centre,
        facility=line.facility,
        debit_cents=line.debit_cents,
        credit_cents=line.credit_cents,
        currency=line.currency,
        encounter_ref=line.encounter_ref,
        source_event_id=line.source_event_id,
        correlation_id=line.correlation_id,
        description=line.description,
    )
