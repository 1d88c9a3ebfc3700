"""UpdatePatient: a person's current demographics on every account of the patient (ADT^A28, A31).

Person updates and the account upserts of the same patient reach billing in any order (they travel on
different partitions: patient key and encounter id). Every account therefore keeps the event time of its
names and birth date (``demographics_at``), and the latest update per patient identifier is kept
(``billing_patients``):

- an update writes the accounts whose demographics are older than it, and only those;
- an account upserted later with older demographics (or with no time) gets the stored update instead;
- an update older than the one stored for that identifier is STALE and changes nothing.

An update names the patient by MRN and assigning authority; an empty authority matches the MRN under any
authority, as a merge's does.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters import invalid_request, request_date, request_datetime, reused_key
from adapters.billing.coding import as_utc
from adapters.billing.merge import lock_identifier
from adapters.billing.schema import AccountRow, PatientRow, PatientUpdateRow
from proto import billing_pb2

__all__ = ["apply_patient_update", "settle_demographics", "validate_patient_update"]

PatientStatus = billing_pb2.UpdatePatientResponse.Status


def validate_patient_update(request: billing_pb2.UpdatePatientRequest) -> None:
    """Refuse an UpdatePatient request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.HasField("patient"):
        raise invalid_request("patient", "is missing", request_id=key)
    if not request.patient.mrn:
        raise invalid_request("patient.mrn", "is empty", request_id=key)
    request_date(request.patient.birth_date, "patient.birth_date", key)
    if not request.HasField("updated_at"):
        raise invalid_request("updated_at", "is missing", request_id=key)
    request_datetime(request, "updated_at", request_id=key)


def _older(written: dt.datetime | None, than: dt.datetime) -> bool:
    """True when demographics written at ``written`` (None: at an unknown time) give way to ``than``."""
    return written is None or as_utc(written) < than


def _write(row: AccountRow, person: PatientRow, now: dt.datetime) -> None:
    """Put a stored person update's names and birth date (where it has them) on an account."""
    if person.family_name:
        row.family_name = person.family_name
    if person.given_name:
        row.given_name = person.given_name
    if person.birth_date is not None:
        row.birth_date = person.birth_date
    row.demographics_at = as_utc(person.updated_at)
    row.version += 1
    row.updated_at = now


def _latest(session: Session, mrn: str, authority: str) -> PatientRow | None:
    """Return the latest person update that names ``mrn`` under ``authority`` (or under none)."""
    query = (
        select(PatientRow)
        .where(PatientRow.mrn == mrn, PatientRow.assigning_authority.in_(("", authority)))
        .order_by(PatientRow.updated_at.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def settle_demographics(session: Session, row: AccountRow, now: dt.datetime) -> None:
    """Give an account the latest person update of its patient when that update is newer than its own."""
    if not row.mrn:
        return
    person = _latest(session, row.mrn, row.assigning_authority)
    if person is not None and _older(row.demographics_at, as_utc(person.updated_at)):
        _write(row, person, now)


def apply_patient_update(
    session: Session, request: billing_pb2.UpdatePatientRequest, digest: str, now: dt.datetime
) -> billing_pb2.UpdatePatientResponse:
    """Record the update in ``session`` and write it on older accounts of the patient; replays: DUPLICATE."""
    key = request.idempotency_key
    seen = session.get(PatientUpdateRow, key)
    if seen is not None:
        if seen.request_digest != digest:
            raise reused_key(key, "another person update")
        return billing_pb2.UpdatePatientResponse(
            status=PatientStatus.DUPLICATE, accounts_updated=seen.accounts_updated
        )
    patient = request.patient
    updated_at = request_datetime(request, "updated_at", request_id=key)
    lock_identifier(session, patient.mrn)
    person = session.get(PatientRow, (patient.mrn, patient.assigning_authority), with_for_update=True)
    updated = 0
    if person is not None and updated_at < as_utc(person.updated_at):
        status = PatientStatus.STALE
    else:
        if person is None:
            person = PatientRow(mrn=patient.mrn, assigning_authority=patient.assigning_authority)
            session.add(person)
        person.family_name = patient.family_name
        person.given_name = patient.given_name
        person.birth_date = request_date(patient.birth_date, "patient.birth_date", key)
        person.updated_at = updated_at
        person.idempotency_key = key
        person.source_event_id = request.source_event_id
        person.correlation_id = request.correlation_id
        query = select(AccountRow).where(AccountRow.mrn == patient.mrn)
        if patient.assigning_authority:
            query = query.where(AccountRow.assigning_authority == patient.assigning_authority)
        for row in session.scalars(query.with_for_update()):
            if _older(row.demographics_at, updated_at):
                _write(row, person, now)
                updated += 1
        status = PatientStatus.UPDATED
    session.add(
        PatientUpdateRow(
            idempotency_key=key,
            status=PatientStatus.Name(status),
            accounts_updated=updated,
            request_digest=digest,
            received_at=now,
        )
    )
    # Flush inside the transaction so a lost race surfaces here as IntegrityError and is rerun.
    session.flush()
    return billing_pb2.UpdatePatientResponse(status=status, accounts_updated=updated)
