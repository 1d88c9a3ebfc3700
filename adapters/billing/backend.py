"""The billing backend: the interface the BillingAdapter service calls, and its SQL reference implementation.

Every write is idempotent and the database decides: an account upsert, a coding update, a patient
merge, a person update and an account move are recorded under their idempotency key (primary key), a
charge under its charge_id (primary key). A replay reads the original outcome back instead of writing
again, and a lost race on any key reruns the transaction. The tables live in adapters.billing.schema,
coding in .coding, merges in .merge, person updates in .patients, account and visit moves in .moves.

``apply_batch`` applies many of the non-charge writes in one transaction, in order, each in a savepoint:
an item refused while it is applied rolls back alone and the others commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from sqlalchemy import ColumnElement, delete, func, insert, select
from sqlalchemy.orm import Session

from adapters import (
    fingerprint,
    invalid_request,
    optional_datetime,
    refusal_code,
    request_date,
    request_datetime,
    reused_key,
    unordered_digest,
)
from adapters.billing import revenue_cycle
from adapters.billing.coding import apply_coding, as_utc, validate_coding
from adapters.billing.merge import apply_merge, surviving_identity, validate_merge
from adapters.billing.moves import apply_move, settle_moves, validate_move
from adapters.billing.patients import apply_patient_update, settle_demographics, validate_patient_update
from adapters.billing.schema import (
    AccountRow,
    AccountUpsertRow,
    Base,
    ChargeBatchRow,
    ChargeRow,
    CodingRow,
    DiagnosisRow,
    HeldChargeRow,
    MergeRow,
    MoveRow,
    PatientRow,
    PatientUpdateRow,
    ProcedureRow,
    create_schema,
    total,
)
from adapters.bounds import MAX_CALL_CENTS, MAX_ITEMS_PER_CALL, MAX_LINE_CENTS, MAX_QUANTITY, beyond
from adapters.erp.masterdata import MasterDataSource, governed_masterdata
from canonical.errors import Fault, InvalidMessageError
from canonical.models import EncounterStatus, TransactionType
from canonical.reference import MasterDataSet
from foundation.settings import get_settings
from foundation.sql import (
    distinct,
    in_chunks,
    int64,
    joined,
    open_engine,
    read_transaction,
    write_transaction,
)
from proto import billing_pb2

__all__ = ["AccountRow", "Base", "BillingBackend", "SqlBillingBackend"]

log = logging.getLogger(__name__)

_STATUSES = {status.value: status for status in EncounterStatus}
_TRANSACTION_TYPES = {kind.value for kind in TransactionType}
# Account text fields an update overwrites when the request carries a value (an empty one keeps ours).
_MERGED_TEXT_FIELDS = (
    "facility",
    "department",
    "patient_class",
    "mrn",
    "family_name",
    "given_name",
    "attending_provider_id",
    "source_event_id",
    "correlation_id",
    "assigning_authority",
    "account_number",
)
# Statuses before a discharge: an account moved back to one of them (a cancelled discharge) has no
# discharge time unless the request gives one.
_NOT_DISCHARGED = frozenset(
    {EncounterStatus.PREADMITTED, EncounterStatus.REGISTERED, EncounterStatus.ADMITTED}
)

UpsertStatus = billing_pb2.UpsertAccountResponse.Status
ChargeStatus = billing_pb2.ChargeResult.Status
CodingStatus = billing_pb2.UpdateCodingResponse.Status
MergeStatus = billing_pb2.MergePatientResponse.Status
PatientStatus = billing_pb2.UpdatePatientResponse.Status
MoveStatus = billing_pb2.MoveAccountResponse.Status

# A command an ApplyBatch item carries: the request of one of the single calls.
BatchCommand: TypeAlias = (
    billing_pb2.UpsertAccountRequest
    | billing_pb2.UpdateCodingRequest
    | billing_pb2.MergePatientRequest
    | billing_pb2.UpdatePatientRequest
    | billing_pb2.MoveAccountRequest
)
# A batch item that passed its checks: its index, kind (oneof field name), request and fingerprint.
_Checked: TypeAlias = tuple[int, str, BatchCommand, str]
# The single call of each kind of batch item (its oneof field name), as its errors name it.
_BATCH_RPCS = {
    "upsert_account": "UpsertAccount",
    "update_coding": "UpdateCoding",
    "merge_patient": "MergePatient",
    "update_patient": "UpdatePatient",
    "move_account": "MoveAccount",
}


class BillingBackend(Protocol):
    """What the BillingAdapter service needs from a billing system."""

    def upsert_account(self, request: billing_pb2.UpsertAccountRequest) -> billing_pb2.UpsertAccountResponse:
        """Create or update an account; a replayed idempotency key returns the original outcome."""
        ...

    def post_charges(self, request: billing_pb2.PostChargesRequest) -> billing_pb2.PostChargesResponse:
        """Post charges, one result per charge in request order; a replayed charge_id is a duplicate."""
        ...

    def update_coding(self, request: billing_pb2.UpdateCodingRequest) -> billing_pb2.UpdateCodingResponse:
        """Replace an encounter's coding unless a later one is stored (STALE); a replayed key is DUPLICATE."""
        ...

    def merge_patient(self, request: billing_pb2.MergePatientRequest) -> billing_pb2.MergePatientResponse:
        """Move the prior identifier's accounts to the surviving patient; a replayed key is DUPLICATE."""
        ...

    def update_patient(self, request: billing_pb2.UpdatePatientRequest) -> billing_pb2.UpdatePatientResponse:
        """Put a person's demographics on the patient's older accounts; STALE when a later one is stored."""
        ...

    def move_account(self, request: billing_pb2.MoveAccountRequest) -> billing_pb2.MoveAccountResponse:
        """Move an account or a visit to another patient; a replayed key is DUPLICATE."""
        ...

    def apply_batch(self, request: billing_pb2.BillingBatchRequest) -> billing_pb2.BillingBatchResponse:
        """Apply the items in order in one transaction; one result (or error) per item, in order."""
        ...

    def totals(self) -> billing_pb2.BillingTotals:
        """Return reconciliation totals over all accounts, charges, codings and merges."""
        ...

    def record_coverage(
        self, request: billing_pb2.RecordCoverageRequest
    ) -> billing_pb2.RecordCoverageResponse:
        """Record an encounter's coverage of one priority; STALE when a newer state is stored."""
        ...

    def record_eligibility(
        self, request: billing_pb2.RecordEligibilityRequest
    ) -> billing_pb2.RecordEligibilityResponse:
        """Record a 271 outcome or a follow-up flag for a coverage."""
        ...

    def create_claims(self, request: billing_pb2.CreateClaimsRequest) -> billing_pb2.CreateClaimsResponse:
        """Build, rebuild or replace an account's claims."""
        ...

    def update_claim_status(
        self, request: billing_pb2.UpdateClaimStatusRequest
    ) -> billing_pb2.UpdateClaimStatusResponse:
        """Apply a claim lifecycle event."""
        ...

    def post_remittance(
        self, request: billing_pb2.PostRemittanceRequest
    ) -> billing_pb2.PostRemittanceResponse:
        """Post one 835 all or nothing."""
        ...

    def list_claims(self, request: billing_pb2.ClaimListRequest) -> billing_pb2.ClaimList:
        """List claims by status, account and payer."""
        ...

    def get_claim(self, request: billing_pb2.GetClaimRequest) -> billing_pb2.GetClaimResponse:
        """Return one claim with its history and payments."""
        ...

    def close(self) -> None:
        """Release the backend's connections."""
        ...


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _birth_date(account: billing_pb2.Account, request_id: str) -> dt.date | None:
    """Parse the account's birth date; an empty one is unknown."""
    return request_date(account.birth_date, "account.birth_date", request_id)


def _validate_upsert(request: billing_pb2.UpsertAccountRequest) -> None:
    """Refuse an UpsertAccount request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.HasField("account"):
        raise invalid_request("account", "is missing", request_id=key)
    account = request.account
    if not account.encounter_id:
        raise invalid_request("account.encounter_id", "is empty", request_id=key)
    if not account.facility:
        raise invalid_request("account.facility", "is empty", request_id=key)
    if account.status not in _STATUSES:
        raise invalid_request(
            "account.status",
            f"must be one of {', '.join(_STATUSES)}, got {account.status!r}",
            request_id=key,
        )
    if account.state_version < 0:
        raise invalid_request("account.state_version", "cannot be negative", request_id=key)
    _birth_date(account, key)
    for name in ("admitted_at", "discharged_at", "patient_as_of"):
        optional_datetime(account, name, field=f"account.{name}", request_id=key)


def _validate_charges(request: billing_pb2.PostChargesRequest) -> None:
    """Refuse a PostCharges request with a malformed charge or beyond the amount bounds, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if len(request.charges) > MAX_ITEMS_PER_CALL:
        raise invalid_request("charges", f"holds more than {MAX_ITEMS_PER_CALL} charges", request_id=key)
    for index, charge in enumerate(request.charges):
        where = f"charges[{index}]"
        for name in ("charge_id", "encounter_id", "charge_code", "currency", "facility"):
            if not getattr(charge, name):
                raise invalid_request(f"{where}.{name}", "is empty", request_id=key)
        if charge.transaction_type not in _TRANSACTION_TYPES:
            raise invalid_request(
                f"{where}.transaction_type",
                f"must be CG or CD, got {charge.transaction_type!r}",
                request_id=key,
            )
        # A CG with a negative amount reverses an earlier charge; a CD credit is never positive.
        if charge.transaction_type == TransactionType.CREDIT and charge.amount_cents > 0:
            raise invalid_request(f"{where}.amount_cents", "a CD credit must be negative", request_id=key)
        if not charge.HasField("service_at"):
            raise invalid_request(f"{where}.service_at", "is missing", request_id=key)
        request_datetime(charge, "service_at", field=f"{where}.service_at", request_id=key)
        _check_bounds(charge, where, key)
    if sum(abs(charge.amount_cents) for charge in request.charges) > MAX_CALL_CENTS:
        raise invalid_request(
            "charges", f"amount_cents summed {beyond(MAX_CALL_CENTS, 'cents per call')}", request_id=key
        )


def _check_bounds(charge: billing_pb2.Charge, where: str, key: str) -> None:
    """Refuse a charge whose amounts or quantity lie beyond any real line (adapters.bounds)."""
    for name in ("amount_cents", "unit_amount_cents", "unit_cost_cents"):
        if abs(getattr(charge, name)) > MAX_LINE_CENTS:
            raise invalid_request(f"{where}.{name}", beyond(MAX_LINE_CENTS, "cents"), request_id=key)
    if abs(charge.quantity) > MAX_QUANTITY:
        raise invalid_request(f"{where}.quantity", beyond(MAX_QUANTITY, "units"), request_id=key)


def _charges_digest(request: billing_pb2.PostChargesRequest) -> str:
    """Return a digest of a PostCharges request that ignores the order of its charges."""
    return unordered_digest(
        billing_pb2.PostChargesRequest(idempotency_key=request.idempotency_key), request.charges
    )


class SqlBillingBackend:
    """The reference billing system: accounts, charges, codings and merges in SQL (SQLite or PostgreSQL)."""

    def __init__(self, database_url: str, masterdata: MasterDataSource | None = None) -> None:
        """Open billing at ``database_url``; ``masterdata`` returns the set in force, read by claims and
        remittances only (by default the deployment's Redis, as the ERP reads it, connected on first use)."""
        self._engine = open_engine(database_url)
        create_schema(self._engine)
        self._masterdata = masterdata

    def _master(self) -> MasterDataSet:
        """Return the master data in force; a RetryableError (UNAVAILABLE) while none is loaded."""
        if self._masterdata is None:
            self._masterdata = governed_masterdata(get_settings())
        return self._masterdata()

    def close(self) -> None:
        """Release the backend's connections."""
        self._engine.dispose()

    def upsert_account(self, request: billing_pb2.UpsertAccountRequest) -> billing_pb2.UpsertAccountResponse:
        """Create or update an account; a replayed idempotency key returns the original outcome."""
        _validate_upsert(request)
        digest = fingerprint(request)
        response = write_transaction(self._engine, lambda session: self._upsert(session, request, digest))
        log.info(
            # The account id is the visit number, an identifier: log the idempotency key only.
            "account upsert %s: %s version %d",
            request.idempotency_key,
            UpsertStatus.Name(response.status),
            response.version,
        )
        return response

    def _upsert(
        self,
        session: Session,
        request: billing_pb2.UpsertAccountRequest,
        digest: str,
        hints: _Absent | None = None,
    ) -> billing_pb2.UpsertAccountResponse:
        key = request.idempotency_key
        account = request.account
        seen = session.get(AccountUpsertRow, key)
        if seen is not None:
            if seen.request_digest == digest:
                return billing_pb2.UpsertAccountResponse(
                    account_id=seen.account_id, status=UpsertStatus.DUPLICATE, version=seen.version
                )
            if seen.account_id != account.encounter_id or seen.source_event_id != account.source_event_id:
                raise reused_key(key, "another account or another event")
            # The same event of the same account, with another state: the encounter's state was derived
            # again. An upsert carries the encounter's whole state, derived from the set of its events
            # and numbered by state_version, not a change: when the embedded broker lost everything, the
            # tables are rebuilt from the message store and may take an encounter's events in another
            # order, so one event can come with another set behind it. The state_version check below
            # decides, as for any upsert; refusing it would keep an older state for good (the state with
            # every event comes with the key of an event already applied).
        now = _now()
        # FOR UPDATE serialises concurrent updates of one account on PostgreSQL; on SQLite the
        # transaction already holds the write lock.
        row = session.get(AccountRow, account.encounter_id, with_for_update=True)
        if row is not None and account.state_version < row.state_version:
            # The encounter agent derives status order-independently and numbers its states; an older
            # state arriving late must not overwrite a newer one (whichever way the status moved).
            status = UpsertStatus.STALE
        else:
            if hints is not None and hints.no_merge(account.mrn):
                merged_by = ""  # no merge names this identifier: the surviving identity is its own
            else:
                account, merged_by = _under_surviving_identity(session, account)
            as_of = optional_datetime(account, "patient_as_of", field="account.patient_as_of")
            if row is None:
                row = _account_row(account, key, now)
                row.owner_at = row.demographics_at = as_of
                session.add(row)
                status = UpsertStatus.CREATED
            else:
                _merge(row, _newer_parts(row, account, as_of), key)
                row.version += 1
                row.updated_at = now
                status = UpsertStatus.UPDATED
            if merged_by:
                row.merged_by = merged_by
            # A move or a person update recorded before this upsert, and newer than what it says, stands.
            if hints is None or not hints.no_move(row.account_id, row.account_number):
                settle_moves(session, row, now)
            if hints is None or not hints.no_person_update(row.mrn):
                settle_demographics(session, row, now)
        if seen is None:
            session.add(
                AccountUpsertRow(
                    idempotency_key=key,
                    account_id=row.account_id,
                    status=UpsertStatus.Name(status),
                    version=row.version,
                    request_digest=digest,
                    received_at=now,
                    source_event_id=account.source_event_id,
                )
            )
        else:  # the state derived again: its exact replay is now the duplicate
            seen.status, seen.version, seen.request_digest = UpsertStatus.Name(status), row.version, digest
        # Flush inside the transaction so a lost race surfaces here as IntegrityError and is rerun.
        session.flush()
        return billing_pb2.UpsertAccountResponse(
            account_id=row.account_id, status=status, version=row.version
        )

    def post_charges(self, request: billing_pb2.PostChargesRequest) -> billing_pb2.PostChargesResponse:
        """Post charges, one result per charge in request order; a replayed charge_id is a duplicate.

        The call's idempotency key is recorded with a digest of its charges: the same key with other
        charges is refused (ALREADY_EXISTS) and changes nothing. A true replay is judged again, charge by
        charge, so what was posted answers DUPLICATE with its original posting_id.
        """
        _validate_charges(request)
        digest = _charges_digest(request)
        response = write_transaction(self._engine, lambda session: self._post(session, request, digest))
        counts = Counter(ChargeStatus.Name(result.status) for result in response.results)
        log.info(
            "charges %s: %d accepted, %d duplicate, %d rejected, %d held, %d held earlier released",
            request.idempotency_key,
            counts["ACCEPTED"],
            counts["DUPLICATE"],
            counts["REJECTED"],
            counts["HELD"],
            len(response.released),
        )
        return response

    def _post(
        self, session: Session, request: billing_pb2.PostChargesRequest, digest: str
    ) -> billing_pb2.PostChargesResponse:
        key = request.idempotency_key
        now = _now()
        seen = session.get(ChargeBatchRow, key)
        if seen is not None and seen.request_digest != digest:
            raise reused_key(key, "another set of charges")
        if seen is None:
            session.add(
                ChargeBatchRow(
                    idempotency_key=key,
                    request_digest=digest,
                    charge_count=len(request.charges),
                    received_at=now,
                )
            )
            # Flushed here so a concurrent call with the same key loses its race now and is rerun.
            session.flush()
        charge_ids = distinct(charge.charge_id for charge in request.charges)
        postings: dict[str, str] = {}
        for chunk in in_chunks(charge_ids):
            rows = session.execute(
                select(ChargeRow.charge_id, ChargeRow.posting_id).where(ChargeRow.charge_id.in_(chunk))
            )
            postings.update({charge_id: posting_id for charge_id, posting_id in rows})
        encounter_ids = distinct(charge.encounter_id for charge in request.charges)
        accounts: set[str] = set()
        for chunk in in_chunks(encounter_ids):
            accounts.update(
                session.scalars(select(AccountRow.account_id).where(AccountRow.account_id.in_(chunk)))
            )
        balances = _Balances.read(session, request.charges, postings)
        held = _held_ids(session, charge_ids)
        response = billing_pb2.PostChargesResponse()
        results = [response.results.add(charge_id=charge.charge_id) for charge in request.charges]
        new_rows: list[dict[str, object]] = []
        credits: list[int] = []

        def accept(charge: billing_pb2.Charge, result: billing_pb2.ChargeResult, request_key: str) -> None:
            posting_id = f"BP-{uuid.uuid4().hex}"
            new_rows.append(_charge_row(charge, posting_id, request_key, now))
            postings[charge.charge_id] = posting_id
            balances.post(charge)
            result.status = ChargeStatus.ACCEPTED
            result.posting_id = posting_id

        for index, charge in enumerate(request.charges):
            result = results[index]
            if charge.charge_id in postings:
                # Posted before, by an earlier call or earlier in this one: report the original posting.
                result.status = ChargeStatus.DUPLICATE
                result.posting_id = postings[charge.charge_id]
            elif charge.encounter_id not in accounts:
                # Not an error: the account may arrive later, and the caller decides whether to retry.
                result.status = ChargeStatus.REJECTED
                result.reason = f"no account for encounter {charge.encounter_id}"
            elif charge.amount_cents < 0:
                credits.append(index)  # judged once every charge of the call is counted
            else:
                accept(charge, result, key)
        for index in credits:
            charge, result = request.charges[index], results[index]
            if charge.charge_id in postings:  # the same credit twice in this call, posted above
                result.status = ChargeStatus.DUPLICATE
                result.posting_id = postings[charge.charge_id]
            elif balances.covers(charge):
                accept(charge, result, key)
                if charge.charge_id in held:  # held by an earlier call, its original has come since
                    session.execute(delete(HeldChargeRow).where(HeldChargeRow.charge_id == charge.charge_id))
            else:
                result.status = ChargeStatus.HELD
                result.reason = balances.waiting(charge, index)
                if charge.charge_id not in held:
                    session.add(_held_row(charge, key, now))
                    held.add(charge.charge_id)
        # Credits held by earlier calls that this call's charges now cover are posted, oldest first.
        for row in _held_for(session, balances.touched, set(charge_ids)):
            charge = billing_pb2.Charge.FromString(row.charge)
            if balances.covers(charge):
                accept(charge, response.released.add(charge_id=charge.charge_id), row.request_key)
                session.delete(row)
        if new_rows:
            # One bulk INSERT (executemany), not the unit of work's per-object bookkeeping; a lost race
            # surfaces here as IntegrityError and the transaction is rerun.
            session.execute(insert(ChargeRow), new_rows)
        return response

    def update_coding(self, request: billing_pb2.UpdateCodingRequest) -> billing_pb2.UpdateCodingResponse:
        """Replace an encounter's coding unless a later one is stored (STALE); a replayed key is DUPLICATE."""
        validate_coding(request)
        digest = fingerprint(request)
        response = write_transaction(
            self._engine, lambda session: apply_coding(session, request, digest, _now())
        )
        log.info(
            "coding %s: %s version %d, %d diagnoses, %d procedures",
            request.idempotency_key,
            CodingStatus.Name(response.status),
            response.version,
            len(request.diagnoses),
            len(request.procedures),
        )
        return response

    def merge_patient(self, request: billing_pb2.MergePatientRequest) -> billing_pb2.MergePatientResponse:
        """Move the prior identifier's accounts to the surviving patient; a replayed key is DUPLICATE."""
        validate_merge(request)
        digest = fingerprint(request)
        response = write_transaction(
            self._engine, lambda session: apply_merge(session, request, digest, _now())
        )
        # Both identifiers are PHI: the log names the key and the count only.
        log.info(
            "patient merge %s: %s, %d accounts moved",
            request.idempotency_key,
            MergeStatus.Name(response.status),
            response.accounts_moved,
        )
        return response

    def update_patient(self, request: billing_pb2.UpdatePatientRequest) -> billing_pb2.UpdatePatientResponse:
        """Put a person's demographics on the patient's older accounts; STALE when a later one is stored."""
        validate_patient_update(request)
        digest = fingerprint(request)
        response = write_transaction(
            self._engine, lambda session: apply_patient_update(session, request, digest, _now())
        )
        # The patient's identifiers and names are PHI: the log names the key and the count only.
        log.info(
            "person update %s: %s, %d accounts updated",
            request.idempotency_key,
            PatientStatus.Name(response.status),
            response.accounts_updated,
        )
        return response

    def move_account(self, request: billing_pb2.MoveAccountRequest) -> billing_pb2.MoveAccountResponse:
        """Move an account or a visit to another patient; a replayed key is DUPLICATE."""
        validate_move(request)
        digest = fingerprint(request)
        response = write_transaction(
            self._engine, lambda session: apply_move(session, request, digest, _now())
        )
        log.info(
            "%s move %s: %s, %d accounts moved",
            billing_pb2.MoveAccountRequest.Scope.Name(request.scope).lower(),
            request.idempotency_key,
            MoveStatus.Name(response.status),
            response.accounts_moved,
        )
        return response

    def apply_batch(self, request: billing_pb2.BillingBatchRequest) -> billing_pb2.BillingBatchResponse:
        """Apply the items in order in one transaction; one result (or error) per item, in order.

        Each item is checked up front as its single call checks it: a refused item gets an
        INVALID_ARGUMENT error result and is skipped. The others are applied in one write transaction,
        each in a savepoint, so an item refused while it is applied (a reused idempotency key) rolls back
        alone. Anything else (a lost unique-key race, a database error) fails the whole call, as it
        fails a single call; a lost race reruns the whole transaction, every item answered afresh.
        """
        if not request.idempotency_key:
            raise invalid_request("idempotency_key", "is empty")
        if len(request.items) > MAX_ITEMS_PER_CALL:
            raise invalid_request(
                "items", f"holds more than {MAX_ITEMS_PER_CALL} items", request_id=request.idempotency_key
            )
        errors: dict[int, billing_pb2.BillingItemError] = {}
        todo: list[_Checked] = []
        for index, item in enumerate(request.items):
            kind = item.WhichOneof("command")
            if kind is None:
                errors[index] = _item_error("ApplyBatch", Fault(rule="", reason="is empty", field="command"))
                continue
            command: BatchCommand = getattr(item, kind)
            try:
                _validate_item(command)
            except InvalidMessageError as exc:
                errors[index] = _item_error(_BATCH_RPCS[kind], exc.fault)
                continue
            todo.append((index, kind, command, fingerprint(command)))
        applied = (
            write_transaction(self._engine, lambda session: self._apply_items(session, todo)) if todo else {}
        )
        response = billing_pb2.BillingBatchResponse()
        for index in range(len(request.items)):
            result = response.results.add()
            if index in errors:
                result.error.CopyFrom(errors[index])
            else:
                result.CopyFrom(applied[index])
        # One line per call, counts by kind and answer: the items' fields are PHI, their keys too many.
        counts = Counter(_outcome(result) for result in response.results)
        log.info(
            "billing batch %s: %d item%s: %s",
            request.idempotency_key,
            len(request.items),
            "" if len(request.items) == 1 else "s",
            ", ".join(f"{outcome} {count}" for outcome, count in sorted(counts.items())) or "none",
        )
        return response

    def _apply_items(
        self, session: Session, todo: list[_Checked]
    ) -> dict[int, billing_pb2.BillingBatchResult]:
        """Apply checked items in order, each in a savepoint; a refusal rolls back that item only."""
        results: dict[int, billing_pb2.BillingBatchResult] = {}
        hints = _Absent.read(session, [command for _, _, command, _ in todo])
        for index, kind, command, digest in todo:
            if kind not in ("upsert_account", "update_coding"):
                hints = None  # a merge, move or person update of this batch: the lookups are needed again
            try:
                with session.begin_nested():
                    results[index] = self._apply_item(session, command, digest, _now(), hints)
            except InvalidMessageError as exc:
                results[index] = billing_pb2.BillingBatchResult(
                    error=_item_error(_BATCH_RPCS[kind], exc.fault)
                )
        return results

    def _apply_item(
        self,
        session: Session,
        command: BatchCommand,
        digest: str,
        now: dt.datetime,
        hints: _Absent | None = None,
    ) -> billing_pb2.BillingBatchResult:
        """Apply one batch item with the function its single call uses."""
        if isinstance(command, billing_pb2.UpsertAccountRequest):
            return billing_pb2.BillingBatchResult(
                upsert_account=self._upsert(session, command, digest, hints)
            )
        if isinstance(command, billing_pb2.UpdateCodingRequest):
            return billing_pb2.BillingBatchResult(update_coding=apply_coding(session, command, digest, now))
        if isinstance(command, billing_pb2.MergePatientRequest):
            return billing_pb2.BillingBatchResult(merge_patient=apply_merge(session, command, digest, now))
        if isinstance(command, billing_pb2.UpdatePatientRequest):
            return billing_pb2.BillingBatchResult(
                update_patient=apply_patient_update(session, command, digest, now)
            )
        return billing_pb2.BillingBatchResult(move_account=apply_move(session, command, digest, now))

    def totals(self) -> billing_pb2.BillingTotals:
        """Return reconciliation totals: accounts, charges, codings, merges, person updates, moves, claims."""
        return read_transaction(self._engine, _totals)

    # The revenue cycle: adapters.billing.revenue_cycle does the work, each write in one transaction.

    def record_coverage(
        self, request: billing_pb2.RecordCoverageRequest
    ) -> billing_pb2.RecordCoverageResponse:
        """Record an encounter's coverage of one priority; STALE when a newer state is stored."""
        revenue_cycle.validate_coverage(request)
        digest = fingerprint(request)
        response = write_transaction(
            self._engine, lambda session: revenue_cycle.record_coverage(session, request, digest, _now())
        )
        status = billing_pb2.RecordCoverageResponse.Status.Name(response.status)
        log.info("coverage %s: %s version %d", request.idempotency_key, status, response.version)
        return response

    def record_eligibility(
        self, request: billing_pb2.RecordEligibilityRequest
    ) -> billing_pb2.RecordEligibilityResponse:
        """Record a 271 outcome or a follow-up flag for a coverage."""
        revenue_cycle.validate_eligibility(request)
        digest = fingerprint(request)
        response = write_transaction(
            self._engine, lambda session: revenue_cycle.record_eligibility(session, request, digest, _now())
        )
        log.info("eligibility %s: %s", request.idempotency_key, response.eligibility_status)
        return response

    def create_claims(self, request: billing_pb2.CreateClaimsRequest) -> billing_pb2.CreateClaimsResponse:
        """Build, rebuild or replace an account's claims."""
        revenue_cycle.validate_claims_request(request)
        digest = fingerprint(request)
        response = write_transaction(
            self._engine,
            lambda session: revenue_cycle.create_claims(session, request, digest, _now(), self._master),
        )
        log.info(
            "claims %s: %s",
            request.idempotency_key,
            ", ".join(billing_pb2.ClaimResult.Status.Name(claim.status) for claim in response.claims),
        )
        return response

    def update_claim_status(
        self, request: billing_pb2.UpdateClaimStatusRequest
    ) -> billing_pb2.UpdateClaimStatusResponse:
        """Apply a claim lifecycle event."""
        revenue_cycle.validate_status_update(request)
        digest = fingerprint(request)
        response = write_transaction(
            self._engine, lambda session: revenue_cycle.update_claim_status(session, request, digest, _now())
        )
        log.info("claim status %s: %s", request.idempotency_key, response.claim_status)
        return response

    def post_remittance(
        self, request: billing_pb2.PostRemittanceRequest
    ) -> billing_pb2.PostRemittanceResponse:
        """Post one 835 all or nothing."""
        revenue_cycle.validate_remittance(request)
        digest = fingerprint(request)
        response = write_transaction(
            self._engine,
            lambda session: revenue_cycle.post_remittance(session, request, digest, _now(), self._master),
        )
        log.info(
            "remittance %s: %s, %d claims",
            response.remittance_id,
            billing_pb2.PostRemittanceResponse.Status.Name(response.status),
            len(request.remittance.claims),
        )
        return response

    def list_claims(self, request: billing_pb2.ClaimListRequest) -> billing_pb2.ClaimList:
        """List claims by status, account and payer."""
        revenue_cycle.validate_list(request)
        return read_transaction(self._engine, lambda session: revenue_cycle.list_claims(session, request))

    def get_claim(self, request: billing_pb2.GetClaimRequest) -> billing_pb2.GetClaimResponse:
        """Return one claim with its history and payments."""
        return read_transaction(self._engine, lambda session: revenue_cycle.get_claim(session, request))


@dataclass(slots=True)
class _Balances:
    """What each account has posted per charge code: what a reversal or a credit may take back.

    Billing keeps no reference from a negative line to the line it reverses (every FT1 is its own charge,
    docs/mappings/dft.md), so its original is the account's charges of the same charge code: a negative
    line is posted only while the account's net amount for that code stays at or above zero, counting
    every charge of the same call. One without (a credit out of nothing, or one that arrived before its
    original: the pipeline keeps no order across messages) is HELD apart, out of the books and the totals,
    and posted when a later call's charges cover it.
    """

    net: dict[tuple[str, str], int] = field(default_factory=dict)
    touched: set[tuple[str, str]] = field(default_factory=set)  # pairs a charge of this call added to

    @classmethod
    def read(
        cls, session: Session, charges: Sequence[billing_pb2.Charge], postings: dict[str, str]
    ) -> _Balances:
        """Read the net per account and charge code of every new line of this call."""
        wanted = {
            (charge.encounter_id, charge.charge_code)
            for charge in charges
            if charge.charge_id not in postings
        }
        balances = cls(net=dict.fromkeys(wanted, 0))
        for chunk in in_chunks(sorted({encounter for encounter, _ in wanted})):
            rows = session.execute(
                select(ChargeRow.encounter_id, ChargeRow.charge_code, *total(ChargeRow.amount_cents))
                .where(ChargeRow.encounter_id.in_(chunk))
                .group_by(ChargeRow.encounter_id, ChargeRow.charge_code)
            )
            for encounter, code, high, low in rows:
                if (encounter, code) in wanted:
                    balances.net[(encounter, code)] = joined(high, low)
        return balances

    def covers(self, charge: billing_pb2.Charge) -> bool:
        """Whether the account's net for the line's charge code stays at or above zero with it."""
        return self.net.get((charge.encounter_id, charge.charge_code), 0) + charge.amount_cents >= 0

    def waiting(self, charge: billing_pb2.Charge, index: int) -> str:
        """Return why a negative line is held: what it takes back against what its code's charges hold."""
        net = self.net.get((charge.encounter_id, charge.charge_code), 0)
        kind = "credit" if charge.transaction_type == TransactionType.CREDIT else "reversal"
        return (
            f"charges[{index}].amount_cents: a {kind} needs an original: the account's net for charge code "
            f"{charge.charge_code} is {net} cents, less than the {-charge.amount_cents} cents it takes back; "
            "held until the account's charges of that code cover it"
        )

    def post(self, charge: billing_pb2.Charge) -> None:
        """Count a posted line in its account's net for its charge code."""
        pair = (charge.encounter_id, charge.charge_code)
        self.net[pair] = self.net.get(pair, 0) + charge.amount_cents
        if charge.amount_cents > 0:
            self.touched.add(pair)


def _held_ids(session: Session, charge_ids: Sequence[str]) -> set[str]:
    """Return which of ``charge_ids`` are held, waiting for their original."""
    held: set[str] = set()
    for chunk in in_chunks(charge_ids):
        held.update(
            session.scalars(select(HeldChargeRow.charge_id).where(HeldChargeRow.charge_id.in_(chunk)))
        )
    return held


def _held_for(session: Session, pairs: set[tuple[str, str]], skip: set[str]) -> list[HeldChargeRow]:
    """Return the held lines of the given accounts and charge codes, oldest first, but those in ``skip``."""
    found: list[HeldChargeRow] = []
    for chunk in in_chunks(sorted({encounter for encounter, _ in pairs})):
        rows = session.scalars(
            select(HeldChargeRow)
            .where(HeldChargeRow.encounter_id.in_(chunk))
            .order_by(HeldChargeRow.held_at, HeldChargeRow.charge_id)
        )
        found.extend(
            row for row in rows if (row.encounter_id, row.charge_code) in pairs and row.charge_id not in skip
        )
    return sorted(found, key=lambda row: (row.held_at, row.charge_id))


def _held_row(charge: billing_pb2.Charge, request_key: str, now: dt.datetime) -> HeldChargeRow:
    """Return the row of a credit held for want of its original."""
    return HeldChargeRow(
        charge_id=charge.charge_id,
        encounter_id=charge.encounter_id,
        charge_code=charge.charge_code,
        amount_cents=charge.amount_cents,
        request_key=request_key,
        charge=charge.SerializeToString(deterministic=True),
        held_at=now,
    )


@dataclass(slots=True)
class _Absent:
    """What a batch's upserts are known not to need: identifiers no merge, move or person update names.

    An upsert looks for a merge of its patient identifier, moves of its visit or account number and a
    person update of its patient: three to five queries, most of an upsert's cost, that nearly always
    find nothing. A batch asks once for all of its upserts (one IN query per table) and an upsert skips
    a lookup only for an identifier that was asked about and found absent, so the answer is the one the
    lookup would give. Only on SQLite, where the write transaction holds the database's lock from its
    start, so nothing can be recorded between this read and the upserts; on PostgreSQL a merge may
    commit meanwhile (the per-identifier lock is taken by the lookup itself), so every upsert looks.
    """

    mrns: set[str] = field(default_factory=set)  # asked about
    merged_mrns: set[str] = field(default_factory=set)
    updated_mrns: set[str] = field(default_factory=set)
    visits: set[str] = field(default_factory=set)
    moved_visits: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)
    moved_numbers: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, session: Session, commands: list[BatchCommand]) -> _Absent | None:
        if session.get_bind().dialect.name != "sqlite":
            return None
        accounts = [c.account for c in commands if isinstance(c, billing_pb2.UpsertAccountRequest)]
        if not accounts:
            return None
        absent = cls(
            mrns={a.mrn for a in accounts if a.mrn},
            visits={a.encounter_id for a in accounts},
            numbers={a.account_number for a in accounts if a.account_number},
        )
        for chunk in in_chunks(sorted(absent.mrns)):
            absent.merged_mrns.update(
                session.scalars(select(MergeRow.prior_mrn).where(MergeRow.prior_mrn.in_(chunk)))
            )
            absent.updated_mrns.update(
                session.scalars(select(PatientRow.mrn).where(PatientRow.mrn.in_(chunk)))
            )
        for chunk in in_chunks(sorted(absent.visits)):
            absent.moved_visits.update(
                session.scalars(select(MoveRow.encounter_id).where(MoveRow.encounter_id.in_(chunk)))
            )
        for chunk in in_chunks(sorted(absent.numbers)):
            absent.moved_numbers.update(
                session.scalars(
                    select(MoveRow.prior_account_number).where(MoveRow.prior_account_number.in_(chunk))
                )
            )
        return absent

    def no_merge(self, mrn: str) -> bool:
        """No merge names ``mrn`` as its prior identifier (an empty one is never looked up)."""
        return not mrn or (mrn in self.mrns and mrn not in self.merged_mrns)

    def no_person_update(self, mrn: str) -> bool:
        return not mrn or (mrn in self.mrns and mrn not in self.updated_mrns)

    def no_move(self, visit: str, number: str) -> bool:
        """No move names the visit, nor the account number (moves of an empty number are never looked up)."""
        visit_clear = visit in self.visits and visit not in self.moved_visits
        number_clear = not number or (number in self.numbers and number not in self.moved_numbers)
        return visit_clear and number_clear


def _validate_item(command: BatchCommand) -> None:
    """Refuse a batch item as its single call would refuse its request."""
    if isinstance(command, billing_pb2.UpsertAccountRequest):
        _validate_upsert(command)
    elif isinstance(command, billing_pb2.UpdateCodingRequest):
        validate_coding(command)
    elif isinstance(command, billing_pb2.MergePatientRequest):
        validate_merge(command)
    elif isinstance(command, billing_pb2.UpdatePatientRequest):
        validate_patient_update(command)
    else:
        validate_move(command)


def _item_error(rpc: str, fault: Fault) -> billing_pb2.BillingItemError:
    """Return the error result of a refused item: what its single call's refusal would say (its code:
    INVALID_ARGUMENT, or ALREADY_EXISTS for a reused idempotency key)."""
    return billing_pb2.BillingItemError(
        code=refusal_code(fault).name, message=f"{rpc}: {fault.field}: {fault.reason}", field=fault.field
    )


def _outcome(result: billing_pb2.BillingBatchResult) -> str:
    """Return "<kind> <status>" of one batch result (or "error <code>"), for the call's summary line."""
    kind = result.WhichOneof("outcome")
    if kind is None:
        return "unanswered"
    if kind == "error":
        return f"error {result.error.code}"
    answer = getattr(result, kind)
    status = answer.DESCRIPTOR.fields_by_name["status"]
    return f"{kind} {status.enum_type.values_by_number[answer.status].name}"


def _newer_parts(
    row: AccountRow, account: billing_pb2.Account, as_of: dt.datetime | None
) -> billing_pb2.Account:
    """Return the upsert without what the stored account knows from later: its patient, its demographics.

    ``as_of`` is when the upsert's demographics were true (None: unknown, so older than anything timed).
    A move or an upsert that named the patient later keeps the stored patient; a person update or a
    move that set the names later keeps the stored names, unless the upsert puts the account under
    another patient. What the upsert brings is stamped with ``as_of``.
    """
    kept = billing_pb2.Account()
    kept.CopyFrom(account)
    if row.owner_at is not None and (as_of is None or as_of < as_utc(row.owner_at)):
        kept.mrn = row.mrn
        kept.assigning_authority = row.assigning_authority
    elif as_of is not None:
        row.owner_at = as_of
    same_patient = (kept.mrn or row.mrn, kept.assigning_authority or row.assigning_authority) == (
        row.mrn,
        row.assigning_authority,
    )
    if (
        same_patient
        and row.demographics_at is not None
        and (as_of is None or as_of < as_utc(row.demographics_at))
    ):
        kept.family_name = kept.given_name = kept.birth_date = ""  # empty keeps the stored values
    elif as_of is not None:
        row.demographics_at = as_of
    return kept


def _under_surviving_identity(
    session: Session, account: billing_pb2.Account
) -> tuple[billing_pb2.Account, str]:
    """Return the account as a recorded merge would have left it, and that merge's key (empty: none)."""
    identity = surviving_identity(session, account.mrn, account.assigning_authority)
    if identity is None:
        return account, ""
    moved = billing_pb2.Account()
    moved.CopyFrom(account)
    moved.mrn = identity.mrn
    moved.assigning_authority = identity.authority
    # The surviving patient's demographics win; the prior record's are used only where it has none.
    if identity.family_name:
        moved.family_name = identity.family_name
    if identity.given_name:
        moved.given_name = identity.given_name
    if identity.birth_date is not None:
        moved.birth_date = identity.birth_date.isoformat()
    return moved, identity.merge_key


def _account_row(account: billing_pb2.Account, request_id: str, now: dt.datetime) -> AccountRow:
    """Build the row of a new account."""
    return AccountRow(
        account_id=account.encounter_id,
        facility=account.facility,
        department=account.department,
        patient_class=account.patient_class,
        status=account.status,
        mrn=account.mrn,
        assigning_authority=account.assigning_authority,
        family_name=account.family_name,
        given_name=account.given_name,
        birth_date=_birth_date(account, request_id),
        admitted_at=optional_datetime(
            account, "admitted_at", field="account.admitted_at", request_id=request_id
        ),
        discharged_at=optional_datetime(
            account, "discharged_at", field="account.discharged_at", request_id=request_id
        ),
        attending_provider_id=account.attending_provider_id,
        source_event_id=account.source_event_id,
        correlation_id=account.correlation_id,
        state_version=account.state_version,
        merged_by="",
        account_number=account.account_number,
        version=1,
        created_at=now,
        updated_at=now,
    )


def _merge(row: AccountRow, account: billing_pb2.Account, request_id: str) -> None:
    """Apply a current (not stale) update: status as given, and empty values keep what is stored."""
    for name in _MERGED_TEXT_FIELDS:
        value = getattr(account, name)
        if value:
            setattr(row, name, value)
    # The caller checked state_version, so the status may move backwards (a cancelled discharge).
    row.status = account.status
    row.state_version = account.state_version
    birth_date = _birth_date(account, request_id)
    if birth_date is not None:
        row.birth_date = birth_date
    row.admitted_at = optional_datetime(account, "admitted_at") or row.admitted_at
    if _STATUSES[account.status] in _NOT_DISCHARGED:
        row.discharged_at = optional_datetime(account, "discharged_at")
    else:
        row.discharged_at = optional_datetime(account, "discharged_at") or row.discharged_at


def _charge_row(
    charge: billing_pb2.Charge, posting_id: str, request_key: str, now: dt.datetime
) -> dict[str, object]:
    """Return the row of a newly accepted charge, for a bulk insert."""
    return {
        "charge_id": charge.charge_id,
        "posting_id": posting_id,
        "encounter_id": charge.encounter_id,
        "transaction_id": charge.transaction_id,
        "transaction_type": charge.transaction_type,
        "charge_code": charge.charge_code,
        "code_system": charge.code_system,
        "description": charge.description,
        "quantity": charge.quantity,
        "unit_amount_cents": charge.unit_amount_cents if charge.HasField("unit_amount_cents") else None,
        "amount_cents": charge.amount_cents,
        "currency": charge.currency,
        "service_at": charge.service_at.ToDatetime(dt.UTC),
        "facility": charge.facility,
        "department": charge.department,
        "source_event_id": charge.source_event_id,
        "correlation_id": charge.correlation_id,
        "request_key": request_key,
        "posted_at": now,
        "procedure_code": charge.procedure_code,
        "ndc_code": charge.ndc_code,
        "is_supply": charge.is_supply,
        "filler_order_number": charge.filler_order_number,
        "unit_cost_cents": charge.unit_cost_cents if charge.HasField("unit_cost_cents") else None,
    }


def _totals(session: Session) -> billing_pb2.BillingTotals:
    """Compute billing totals in one snapshot; sums are exact whatever the rows (foundation.sql.total)."""
    account_count = session.scalar(select(func.count()).select_from(AccountRow)) or 0
    charge_count, high, low = session.execute(
        select(func.count(), *total(ChargeRow.amount_cents)).select_from(ChargeRow)
    ).one()
    totals = billing_pb2.BillingTotals(
        account_count=account_count,
        charge_count=charge_count,
        amount_cents=int64(joined(high, low), "billing amount_cents"),
    )
    by_facility = session.execute(
        select(ChargeRow.facility, func.count(), *total(ChargeRow.amount_cents))
        .group_by(ChargeRow.facility)
        .order_by(ChargeRow.facility)
    )
    for facility, count, high, low in by_facility:
        amount = int64(joined(high, low), "billing amount_cents of a facility")
        totals.by_facility.add(facility=facility, charge_count=count, amount_cents=amount)
    by_status = session.execute(
        select(AccountRow.status, func.count()).group_by(AccountRow.status).order_by(AccountRow.status)
    )
    for status, count in by_status:
        totals.by_status.add(status=status, account_count=count)
    totals.reversal_count = _count(session, ChargeRow, ChargeRow.amount_cents < 0)
    supply_count, high, low = session.execute(
        select(func.count(), *total(ChargeRow.amount_cents)).where(ChargeRow.is_supply)
    ).one()
    totals.supply_charge_count = supply_count
    totals.supply_amount_cents = int64(joined(high, low), "billing supply_amount_cents")
    held_count, high, low = session.execute(
        select(func.count(), *total(HeldChargeRow.amount_cents)).select_from(HeldChargeRow)
    ).one()
    totals.held_credit_count = held_count
    totals.held_credit_cents = int64(joined(high, low), "billing held_credit_cents")
    totals.coded_account_count = _count(session, CodingRow)
    totals.drg_count = _count(session, CodingRow, CodingRow.drg_code.is_not(None))
    totals.diagnosis_count = _count(session, DiagnosisRow)
    totals.procedure_count = _count(session, ProcedureRow)
    totals.merge_count = _count(session, MergeRow)
    totals.merged_account_count = _count(session, AccountRow, AccountRow.merged_by != "")
    totals.patient_update_count = _count(
        session, PatientUpdateRow, PatientUpdateRow.status == PatientStatus.Name(PatientStatus.UPDATED)
    )
    totals.account_move_count = _count(session, MoveRow)
    totals.moved_account_count = _count(session, AccountRow, AccountRow.moved_by != "")
    cycle = revenue_cycle.revenue_cycle_totals(session)
    if cycle.ByteSize():  # left unset while there is none, so a billing without claims answers as before
        totals.revenue_cycle.CopyFrom(cycle)
    return totals


def _count(session: Session, table: type[Base], *where: ColumnElement[bool]) -> int:
    """Return the number of rows of ``table`` that satisfy every condition in ``where``."""
    return session.scalar(select(func.count()).select_from(table).where(*where)) or 0
