"""MergePatient: move the accounts of a prior patient identifier to the surviving patient (ADT^A40).

Events of different encounters are processed concurrently, so a merge may reach billing before the
accounts it concerns. Every merge is therefore kept, and an account upserted later under the prior
identifier is stored under the surviving one (``surviving_identity``). Merges chain (A into B, then
B into C): an identifier resolves to the end of its chain, whichever order the merges arrived in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from adapters import invalid_request, request_date, reused_key
from adapters.billing.schema import AccountRow, MergeRow
from proto import billing_pb2

__all__ = ["Identity", "apply_merge", "lock_identifier", "move", "surviving_identity", "validate_merge"]

MergeStatus = billing_pb2.MergePatientResponse.Status
# Far beyond any real chain of merges; a bound so corrupt data cannot loop.
_MAX_CHAIN = 64


@dataclass(frozen=True, slots=True)
class Identity:
    """A patient identifier and the demographics billing stores with it (PHI)."""

    mrn: str
    authority: str
    family_name: str = ""
    given_name: str = ""
    birth_date: dt.date | None = None
    merge_key: str = ""  # the merge this identity comes from; empty for the one asked about

    @property
    def key(self) -> tuple[str, str]:
        return (self.mrn, self.authority)

    def after(self, merge: MergeRow) -> Identity:
        """Return the identity that ``merge`` moves this one to; demographics it leaves empty are kept."""
        return Identity(
            mrn=merge.surviving_mrn,
            authority=merge.surviving_assigning_authority or self.authority,
            family_name=merge.surviving_family_name or self.family_name,
            given_name=merge.surviving_given_name or self.given_name,
            birth_date=merge.surviving_birth_date or self.birth_date,
            merge_key=merge.idempotency_key,
        )


def validate_merge(request: billing_pb2.MergePatientRequest) -> None:
    """Refuse a MergePatient request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.prior_mrn:
        raise invalid_request("prior_mrn", "is empty", request_id=key)
    if not request.HasField("surviving"):
        raise invalid_request("surviving", "is missing", request_id=key)
    if not request.surviving.mrn:
        raise invalid_request("surviving.mrn", "is empty", request_id=key)
    request_date(request.surviving.birth_date, "surviving.birth_date", key)
    surviving_authority = request.surviving.assigning_authority or request.prior_assigning_authority
    if (request.surviving.mrn, surviving_authority) == (request.prior_mrn, request.prior_assigning_authority):
        raise invalid_request("surviving.mrn", "is the prior identifier: nothing to merge", request_id=key)


def lock_identifier(session: Session, mrn: str) -> None:
    """Order, until the transaction ends, every merge and upsert that reads or moves ``mrn``."""
    # On SQLite the write transaction already holds the database's lock. On PostgreSQL a row that does
    # not exist yet cannot be locked FOR UPDATE, so a merge and a concurrent first upsert of its prior
    # identifier could each miss the other; an advisory lock per identifier puts one after the other.
    # Locks are taken along a chain in merge direction (prior, then surviving) so they cannot deadlock.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"hcsync.mrn|{mrn}"})


def _latest_merge(session: Session, identity: Identity) -> MergeRow | None:
    """Return the latest merge whose prior identifier is ``identity`` (any authority when it gave none)."""
    query = (
        select(MergeRow)
        .where(
            MergeRow.prior_mrn == identity.mrn,
            MergeRow.prior_assigning_authority.in_(("", identity.authority)),
        )
        .order_by(MergeRow.received_at.desc(), MergeRow.idempotency_key.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def _follow(session: Session, start: Identity, avoid: set[tuple[str, str]]) -> Identity:
    """Follow recorded merges from ``start`` to the surviving identity, never stepping onto ``avoid``."""
    current = start
    seen = {*avoid, start.key}
    for _ in range(_MAX_CHAIN):
        lock_identifier(session, current.mrn)
        merge = _latest_merge(session, current)
        if merge is None:
            break
        following = current.after(merge)
        if following.key in seen:
            # A cycle (an identifier merged back): stop where we are rather than loop.
            break
        seen.add(following.key)
        current = following
    return current


def surviving_identity(session: Session, mrn: str, authority: str) -> Identity | None:
    """Return the identity a recorded merge moved ``mrn`` to, or None when no merge concerns it."""
    if not mrn:
        return None
    found = _follow(session, Identity(mrn=mrn, authority=authority), set())
    return found if found.merge_key else None


def apply_merge(
    session: Session, request: billing_pb2.MergePatientRequest, digest: str, now: dt.datetime
) -> billing_pb2.MergePatientResponse:
    """Record the merge in ``session`` and move the prior identifier's accounts; a replay is DUPLICATE."""
    key = request.idempotency_key
    seen = session.get(MergeRow, key)
    if seen is not None:
        if seen.request_digest != digest:
            raise reused_key(key, "another merge")
        return billing_pb2.MergePatientResponse(
            status=MergeStatus.DUPLICATE, accounts_moved=seen.accounts_moved
        )

    surviving = request.surviving
    prior = (request.prior_mrn, request.prior_assigning_authority)
    lock_identifier(session, request.prior_mrn)
    target = Identity(
        mrn=surviving.mrn,
        authority=surviving.assigning_authority or request.prior_assigning_authority,
        family_name=surviving.family_name,
        given_name=surviving.given_name,
        birth_date=request_date(surviving.birth_date, "surviving.birth_date", key),
        merge_key=key,
    )
    # The surviving patient may itself have been merged into another already (merges arrive in any order).
    target = _follow(session, target, {prior})

    query = select(AccountRow).where(AccountRow.mrn == request.prior_mrn)
    if request.prior_assigning_authority:
        query = query.where(AccountRow.assigning_authority == request.prior_assigning_authority)
    accounts = list(session.scalars(query.with_for_update()))
    for row in accounts:
        move(row, target, now)
    session.add(
        MergeRow(
            idempotency_key=key,
            prior_mrn=request.prior_mrn,
            prior_assigning_authority=request.prior_assigning_authority,
            prior_account_number=request.prior_account_number,
            prior_visit_number=request.prior_visit_number,
            surviving_mrn=surviving.mrn,
            surviving_assigning_authority=surviving.assigning_authority,
            surviving_family_name=surviving.family_name,
            surviving_given_name=surviving.given_name,
            surviving_birth_date=request_date(surviving.birth_date, "surviving.birth_date", key),
            accounts_moved=len(accounts),
            source_event_id=request.source_event_id,
            correlation_id=request.correlation_id,
            request_digest=digest,
            received_at=now,
        )
    )
    # Flush inside the transaction so a lost race surfaces here as IntegrityError and is rerun.
    session.flush()
    return billing_pb2.MergePatientResponse(status=MergeStatus.MERGED, accounts_moved=len(accounts))


def move(row: AccountRow, target: Identity, now: dt.datetime) -> None:
    """Put an account under ``target``: its identifier, and its demographics where it has them."""
    row.mrn = target.mrn
    row.assigning_authority = target.authority
    if target.family_name:
        row.family_name = target.family_name
    if target.given_name:
        row.given_name = target.given_name
    if target.birth_date is not None:
        row.birth_date = target.birth_date
    row.merged_by = target.merge_key
    row.version += 1
    row.updated_at = now
