"""UpdateCoding: replace an encounter's diagnoses, procedures and DRG, unless a later coding is stored.

BAR messages send the encounter's current coding, not a delta, and codings of one encounter can reach
billing out of order; the stored coding is the one with the latest ``coded_at`` (ties: the last one
received). The account need not exist: coding is keyed by encounter id, so it may come first.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete
from sqlalchemy.orm import Session

from adapters import invalid_request, optional_datetime
from adapters.billing.schema import CodingRow, CodingUpdateRow, DiagnosisRow, ProcedureRow
from proto import billing_pb2

__all__ = ["apply_coding", "as_utc", "validate_coding"]

CodingStatus = billing_pb2.UpdateCodingResponse.Status


def as_utc(value: dt.datetime) -> dt.datetime:
    """Return ``value`` as an aware UTC datetime; a naive one (SQLite drops the zone) is taken as UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def validate_coding(request: billing_pb2.UpdateCodingRequest) -> None:
    """Refuse an UpdateCoding request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.encounter_id:
        raise invalid_request("encounter_id", "is empty", request_id=key)
    if not request.HasField("coded_at"):
        raise invalid_request("coded_at", "is missing", request_id=key)
    for index, diagnosis in enumerate(request.diagnoses):
        if not diagnosis.code:
            raise invalid_request(f"diagnoses[{index}].code", "is empty", request_id=key)
    for index, procedure in enumerate(request.procedures):
        if not procedure.code:
            raise invalid_request(f"procedures[{index}].code", "is empty", request_id=key)
    if request.HasField("drg") and not request.drg.code:
        raise invalid_request("drg.code", "is empty", request_id=key)


def apply_coding(
    session: Session, request: billing_pb2.UpdateCodingRequest, digest: str, now: dt.datetime
) -> billing_pb2.UpdateCodingResponse:
    """Store the request's coding in ``session`` unless it is a replay or older than the stored one."""
    key = request.idempotency_key
    seen = session.get(CodingUpdateRow, key)
    if seen is not None:
        if seen.request_digest != digest:
            raise invalid_request(
                "idempotency_key", "was already used for a different request", request_id=key
            )
        return billing_pb2.UpdateCodingResponse(
            encounter_id=seen.encounter_id, status=CodingStatus.DUPLICATE, version=seen.version
        )
    coded_at = request.coded_at.ToDatetime(dt.UTC)
    row = session.get(CodingRow, request.encounter_id, with_for_update=True)
    if row is not None and coded_at < as_utc(row.coded_at):
        status = CodingStatus.STALE
    else:
        if row is None:
            row = CodingRow(encounter_id=request.encounter_id, version=0)
            session.add(row)
        else:
            # Replace, not merge: a diagnosis absent from the new coding was removed by the coder.
            session.execute(delete(DiagnosisRow).where(DiagnosisRow.encounter_id == request.encounter_id))
            session.execute(delete(ProcedureRow).where(ProcedureRow.encounter_id == request.encounter_id))
        _fill(row, request, coded_at, now)
        # The coding row first: the diagnosis and procedure rows reference it.
        session.flush()
        session.add_all(_diagnosis_rows(request))
        session.add_all(_procedure_rows(request))
        status = CodingStatus.APPLIED
    session.add(
        CodingUpdateRow(
            idempotency_key=key,
            encounter_id=request.encounter_id,
            status=CodingStatus.Name(status),
            version=row.version,
            request_digest=digest,
            received_at=now,
        )
    )
    # Flush inside the transaction so a lost race surfaces here as IntegrityError and is rerun.
    session.flush()
    return billing_pb2.UpdateCodingResponse(
        encounter_id=request.encounter_id, status=status, version=row.version
    )


def _fill(
    row: CodingRow, request: billing_pb2.UpdateCodingRequest, coded_at: dt.datetime, now: dt.datetime
) -> None:
    """Overwrite the coding row with the request's coding."""
    has_drg = request.HasField("drg")
    row.coded_at = coded_at
    row.drg_code = request.drg.code if has_drg else None
    row.drg_description = request.drg.description if has_drg else ""
    row.drg_code_system = request.drg.code_system if has_drg else ""
    row.drg_assigned_at = optional_datetime(request.drg, "assigned_at")
    row.version += 1
    row.source_event_id = request.source_event_id
    row.correlation_id = request.correlation_id
    row.updated_at = now


def _diagnosis_rows(request: billing_pb2.UpdateCodingRequest) -> list[DiagnosisRow]:
    return [
        DiagnosisRow(
            encounter_id=request.encounter_id,
            position=position,
            sequence=diagnosis.sequence,
            code=diagnosis.code,
            description=diagnosis.description,
            code_system=diagnosis.code_system,
            diagnosis_type=diagnosis.diagnosis_type,
            priority=diagnosis.priority if diagnosis.HasField("priority") else None,
            diagnosed_at=optional_datetime(diagnosis, "diagnosed_at"),
        )
        for position, diagnosis in enumerate(request.diagnoses)
    ]


def _procedure_rows(request: billing_pb2.UpdateCodingRequest) -> list[ProcedureRow]:
    return [
        ProcedureRow(
            encounter_id=request.encounter_id,
            position=position,
            sequence=procedure.sequence,
            code=procedure.code,
            description=procedure.description,
            code_system=procedure.code_system,
            performed_at=optional_datetime(procedure, "performed_at"),
            priority=procedure.priority if procedure.HasField("priority") else None,
            surgeon_id=procedure.surgeon_id,
        )
        for position, procedure in enumerate(request.procedures)
    ]
