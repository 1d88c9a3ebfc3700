"""MoveAccount: an account (ADT^A44) or a visit (ADT^A45) moves from the prior patient to another.

A VISIT move names the account by its encounter id; an ACCOUNT move names the prior patient's accounts by
account number (PID-18), every visit of that account number. Moves reach billing in any order, and before
or after the accounts they concern, so every move is kept (``billing_account_moves``) and event times
decide. Each account keeps the time of the patient it is under (``AccountRow.owner_at``):

- a move writes the accounts it names unless their patient was decided later (a later move, or an
  upsert that named the patient after it); older ones are left where they are;
- an account upserted later is put under the latest move that names it, unless the upsert is newer than
  that move (the EHR named the patient again after the move);
- ACCOUNT moves chain: an account that reaches a patient whose account number was moved on later (A to
  B, then B to C) follows, in whatever order the two arrived.

Names and birth date come with the move (the PID); a later person update of the target still wins
(adapters.billing.patients).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters import invalid_request, request_date, request_datetime, reused_key
from adapters.billing.coding import as_utc
from adapters.billing.merge import lock_identifier
from adapters.billing.schema import AccountRow, MoveRow
from proto import billing_pb2

__all__ = ["apply_move", "settle_moves", "validate_move"]

MoveStatus = billing_pb2.MoveAccountResponse.Status
Scope = billing_pb2.MoveAccountRequest.Scope
_ACCOUNT = Scope.Name(Scope.ACCOUNT)
_VISIT = Scope.Name(Scope.VISIT)
# Far beyond any real chain of moves; a bound so corrupt data cannot loop.
_MAX_CHAIN = 64


def validate_move(request: billing_pb2.MoveAccountRequest) -> None:
    """Refuse a MoveAccount request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if request.scope not in (Scope.ACCOUNT, Scope.VISIT):
        raise invalid_request("scope", "must be ACCOUNT or VISIT", request_id=key)
    if not request.prior_mrn:
        raise invalid_request("prior_mrn", "is empty", request_id=key)
    if request.scope == Scope.ACCOUNT and not request.prior_account_number:
        raise invalid_request("prior_account_number", "is empty: an ACCOUNT move names one", request_id=key)
    if request.scope == Scope.VISIT and not request.encounter_id:
        raise invalid_request("encounter_id", "is empty: a VISIT move names one", request_id=key)
    if not request.HasField("target") or not request.target.mrn:
        raise invalid_request("target.mrn", "is empty", request_id=key)
    request_date(request.target.birth_date, "target.birth_date", key)
    if not request.HasField("moved_at"):
        raise invalid_request("moved_at", "is missing", request_id=key)
    request_datetime(request, "moved_at", request_id=key)


def _decided_after(row: AccountRow, when: dt.datetime) -> bool:
    """True when the account's patient was decided later than ``when``."""
    return row.owner_at is not None and as_utc(row.owner_at) > when


def _place(row: AccountRow, move: MoveRow, now: dt.datetime) -> None:
    """Put an account under a move's target: its identifier, and its demographics where the move has them."""
    moved_at = as_utc(move.moved_at)
    row.mrn = move.target_mrn
    row.assigning_authority = move.target_assigning_authority or move.prior_assigning_authority
    if move.target_family_name:
        row.family_name = move.target_family_name
    if move.target_given_name:
        row.given_name = move.target_given_name
    if move.target_birth_date is not None:
        row.birth_date = move.target_birth_date
    row.demographics_at = moved_at
    row.moved_by = move.idempotency_key
    row.owner_at = moved_at
    row.version += 1
    row.updated_at = now


def _account_moves(session: Session, row: AccountRow) -> list[MoveRow]:
    """Return the ACCOUNT moves of the account's number from the patient it is under, earliest first."""
    if not row.account_number:
        return []
    query = select(MoveRow).where(
        MoveRow.scope == _ACCOUNT,
        MoveRow.prior_account_number == row.account_number,
        MoveRow.prior_mrn == row.mrn,
        MoveRow.prior_assigning_authority.in_(("", row.assigning_authority)),
    )
    return list(session.scalars(query.order_by(MoveRow.moved_at, MoveRow.received_at)))


def _follow(session: Session, row: AccountRow, now: dt.datetime) -> None:
    """Move an account on along the later ACCOUNT moves of its number from each patient it reaches."""
    for _ in range(_MAX_CHAIN):
        following = next(
            (move for move in _account_moves(session, row) if not _decided_after(row, as_utc(move.moved_at))),
            None,
        )
        if following is None or following.idempotency_key == row.moved_by:
            return
        _place(row, following, now)


def settle_moves(session: Session, row: AccountRow, now: dt.datetime) -> None:
    """Put a just-upserted account under the latest recorded move that names it and is not older."""
    visit = session.scalars(
        select(MoveRow)
        .where(MoveRow.scope == _VISIT, MoveRow.encounter_id == row.account_id)
        .order_by(MoveRow.moved_at.desc(), MoveRow.received_at.desc())
        .limit(1)
    ).first()
    if (
        visit is not None
        and not _decided_after(row, as_utc(visit.moved_at))
        and visit.idempotency_key != row.moved_by
    ):
        _place(row, visit, now)
    _follow(session, row, now)


def apply_move(
    session: Session, request: billing_pb2.MoveAccountRequest, digest: str, now: dt.datetime
) -> billing_pb2.MoveAccountResponse:
    """Record the move in ``session`` and move the accounts it names; a replay is DUPLICATE."""
    key = request.idempotency_key
    seen = session.get(MoveRow, key)
    if seen is not None:
        if seen.request_digest != digest:
            raise reused_key(key, "another move")
        return billing_pb2.MoveAccountResponse(
            status=MoveStatus.DUPLICATE, accounts_moved=seen.accounts_moved
        )
    lock_identifier(session, request.prior_mrn)
    target = request.target
    moved_at = request_datetime(request, "moved_at", request_id=key)
    move = MoveRow(
        idempotency_key=key,
        scope=Scope.Name(request.scope),
        prior_mrn=request.prior_mrn,
        prior_assigning_authority=request.prior_assigning_authority,
        prior_account_number=request.prior_account_number,
        prior_visit_number=request.prior_visit_number,
        encounter_id=request.encounter_id,
        target_mrn=target.mrn,
        target_assigning_authority=target.assigning_authority,
        target_family_name=target.family_name,
        target_given_name=target.given_name,
        target_birth_date=request_date(target.birth_date, "target.birth_date", key),
        moved_at=moved_at,
        accounts_moved=0,
        source_event_id=request.source_event_id,
        correlation_id=request.correlation_id,
        request_digest=digest,
        received_at=now,
    )
    session.add(move)
    if request.scope == Scope.VISIT:
        query = select(AccountRow).where(AccountRow.account_id == request.encounter_id)
    else:
        query = select(AccountRow).where(
            AccountRow.account_number == request.prior_account_number, AccountRow.mrn == request.prior_mrn
        )
        if request.prior_assigning_authority:
            query = query.where(AccountRow.assigning_authority == request.prior_assigning_authority)
    rows = list(session.scalars(query.with_for_update()))
    session.flush()  # the move is a row now: _follow may read it
    moved = 0
    for row in rows:
        if _decided_after(row, moved_at):
            continue  # a later move of this account, or a later word from the EHR, stands
        _place(row, move, now)
        _follow(session, row, now)
        moved += 1
    move.accounts_moved = moved
    # Flush inside the transaction so a lost race surfaces here as IntegrityError and is rerun.
    session.flush()
    return billing_pb2.MoveAccountResponse(status=MoveStatus.MOVED, accounts_moved=moved)
