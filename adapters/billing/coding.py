"""UpdateCoding: apply an encounter's coding, a full one (REPLACE) or changes item by item (MERGE).

BAR^P01/P05/P06 send the encounter's current coding (REPLACE); BAR^P12 and DFT send changes (MERGE:
A, U or no action adds or updates an item, D deletes it, X changes nothing). Codings of one encounter
reach billing in any order, so every item (a diagnosis or procedure, named by its identifier, else its
code) keeps the time it was last written, deletions included, and the DRG its own; items are stored
in the order they were written (a full coding's in its own order):

- a coding older than the full coding in force is STALE and changes nothing;
- a REPLACE at time T replaces every item last written at or before T and keeps those a later merge
  wrote (or deleted); a MERGE at time T changes only the items it lists whose last word is not later;
- on equal times the last one received wins.

So the same set of codings ends in the same stored coding whatever order they arrive in. The account
need not exist: coding is keyed by encounter id, so it may come first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from google.protobuf.message import Message
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from adapters import invalid_request, optional_datetime, request_datetime, reused_key
from adapters.billing.schema import (
    CodingRemovalRow,
    CodingRow,
    CodingUpdateRow,
    DiagnosisRow,
    ProcedureRow,
)
from proto import billing_pb2

__all__ = ["apply_coding", "as_utc", "item_key", "validate_coding"]

CodingStatus = billing_pb2.UpdateCodingResponse.Status
Mode = billing_pb2.UpdateCodingRequest.Mode
_ACTIONS = frozenset({"", "A", "D", "U", "X"})


class _CodedItem(Protocol):
    """What a request's Diagnosis and Procedure have in common."""

    @property
    def code(self) -> str: ...
    @property
    def identifier(self) -> str: ...
    @property
    def action(self) -> str: ...


class _ItemRow(Protocol):
    """What a stored diagnosis and procedure row have in common."""

    @property
    def code(self) -> str: ...
    @property
    def identifier(self) -> str: ...
    @property
    def as_of(self) -> dt.datetime | None: ...


def as_utc(value: dt.datetime) -> dt.datetime:
    """Return ``value`` as an aware UTC datetime; a naive one (SQLite drops the zone) is taken as UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def item_key(identifier: str, code: str) -> str:
    """Return what names a diagnosis or procedure across codings: its identifier, else its code."""
    return f"id:{identifier}" if identifier else f"code:{code}"


def validate_coding(request: billing_pb2.UpdateCodingRequest) -> None:
    """Refuse an UpdateCoding request that breaks the contract, naming the field."""
    key = request.idempotency_key
    if not key:
        raise invalid_request("idempotency_key", "is empty")
    if not request.encounter_id:
        raise invalid_request("encounter_id", "is empty", request_id=key)
    if not request.HasField("coded_at"):
        raise invalid_request("coded_at", "is missing", request_id=key)
    request_datetime(request, "coded_at", request_id=key)
    if request.HasField("drg"):
        optional_datetime(request.drg, "assigned_at", field="drg.assigned_at", request_id=key)
    if request.mode not in (Mode.REPLACE, Mode.MERGE):
        raise invalid_request("mode", f"must be REPLACE or MERGE, got {request.mode}", request_id=key)
    lists: tuple[tuple[str, Sequence[_CodedItem]], ...] = (
        ("diagnoses", request.diagnoses),
        ("procedures", request.procedures),
    )
    for field, items in lists:
        for index, item in enumerate(items):
            if not item.code:
                raise invalid_request(f"{field}[{index}].code", "is empty", request_id=key)
            stamp = "diagnosed_at" if field == "diagnoses" else "performed_at"
            # A Diagnosis or a Procedure message: _CodedItem names only what the checks here read.
            optional_datetime(cast(Message, item), stamp, field=f"{field}[{index}].{stamp}", request_id=key)
            if item.action not in _ACTIONS:
                raise invalid_request(
                    f"{field}[{index}].action",
                    f"must be A, D, U, X or empty, got {item.action!r}",
                    request_id=key,
                )
    if request.HasField("drg") and not request.drg.code:
        raise invalid_request("drg.code", "is empty", request_id=key)


def _horizon(row: CodingRow | None) -> dt.datetime | None:
    """Return the time of the full coding in force; None when only merges were applied (or nothing)."""
    if row is None:
        return None
    if row.replaced_at is not None:
        return as_utc(row.replaced_at)
    # A row of an earlier release: every coding then was a full one.
    return as_utc(row.coded_at) if row.full_coding else None


@dataclass(frozen=True, slots=True)
class _Kind:
    """Diagnoses or procedures: their table, the request field and the row values of one item."""

    name: str
    table: type[DiagnosisRow] | type[ProcedureRow]
    items: Callable[[billing_pb2.UpdateCodingRequest], Sequence[Any]]
    values: Callable[[Any], dict[str, Any]]


def _diagnosis_values(item: billing_pb2.Diagnosis) -> dict[str, Any]:
    return {
        "sequence": item.sequence,
        "code": item.code,
        "description": item.description,
        "code_system": item.code_system,
        "diagnosis_type": item.diagnosis_type,
        "priority": item.priority if item.HasField("priority") else None,
        "diagnosed_at": optional_datetime(item, "diagnosed_at"),
        "identifier": item.identifier,
    }


def _procedure_values(item: billing_pb2.Procedure) -> dict[str, Any]:
    return {
        "sequence": item.sequence,
        "code": item.code,
        "description": item.description,
        "code_system": item.code_system,
        "performed_at": optional_datetime(item, "performed_at"),
        "priority": item.priority if item.HasField("priority") else None,
        "surgeon_id": item.surgeon_id,
        "identifier": item.identifier,
    }


_KINDS = (
    _Kind("diagnosis", DiagnosisRow, lambda request: request.diagnoses, _diagnosis_values),
    _Kind("procedure", ProcedureRow, lambda request: request.procedures, _procedure_values),
)
_COLUMNS = {
    kind.name: tuple(
        c.name for c in kind.table.__table__.columns if c.name not in ("encounter_id", "position", "as_of")
    )
    for kind in _KINDS
}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One stored item: what names it, when it was last written, and its column values."""

    key: str
    written: dt.datetime
    values: dict[str, Any]


def _replace(
    entries: list[_Entry],
    removed: dict[str, dt.datetime],
    incoming: Sequence[_CodedItem],
    kind: _Kind,
    coded_at: dt.datetime,
) -> tuple[list[_Entry], dict[str, dt.datetime]]:
    """Return the items and deletions after a full coding at ``coded_at``.

    What a later merge wrote or deleted stands; everything else is the full coding's (duplicates as sent,
    items with action D left out).
    """
    later = [entry for entry in entries if entry.written > coded_at]
    later_keys = {entry.key for entry in later}
    removed = {key: when for key, when in removed.items() if when > coded_at}
    result = [
        _Entry(item_key(item.identifier, item.code), coded_at, kind.values(item))
        for item in incoming
        if item.action != "D"
    ]
    result = [entry for entry in result if entry.key not in later_keys and entry.key not in removed]
    return [*result, *later], removed


def _merge(
    entries: list[_Entry],
    removed: dict[str, dt.datetime],
    incoming: Sequence[_CodedItem],
    kind: _Kind,
    coded_at: dt.datetime,
) -> list[_Entry]:
    """Return the items after changes at ``coded_at``; ``removed`` gains the deletions, loses the re-adds.

    An item whose last word (written or deleted) is later stands, and X changes nothing; D deletes every
    stored item of that name; A, U or no action replaces them with the new version.
    """
    for item in incoming:
        key = item_key(item.identifier, item.code)
        mine = [entry.written for entry in entries if entry.key == key]
        last = max(mine) if mine else removed.get(key)
        if (last is not None and last > coded_at) or item.action == "X":
            continue
        entries = [entry for entry in entries if entry.key != key]
        if item.action == "D":
            removed[key] = coded_at
        else:
            removed.pop(key, None)
            entries.append(_Entry(key, coded_at, kind.values(item)))
    return entries


def _apply_items(
    session: Session,
    kind: _Kind,
    request: billing_pb2.UpdateCodingRequest,
    coded_at: dt.datetime,
    legacy: dt.datetime | None,
) -> None:
    """Apply the request's items of one kind to the stored ones and write them back in order."""
    encounter_id = request.encounter_id
    table = kind.table
    stored = cast(
        Iterable[_ItemRow],
        session.scalars(select(table).where(table.encounter_id == encounter_id).order_by(table.position)),
    )
    entries: list[_Entry] = []
    for row in stored:
        written = as_utc(row.as_of) if row.as_of is not None else legacy
        assert written is not None  # only a full coding writes items without a time, and it set one
        values = {c: getattr(row, c) for c in _COLUMNS[kind.name]}
        entries.append(_Entry(item_key(row.identifier, row.code), written, values))
    removals = session.scalars(
        select(CodingRemovalRow).where(
            CodingRemovalRow.encounter_id == encounter_id, CodingRemovalRow.kind == kind.name
        )
    )
    removed = {row.item: as_utc(row.as_of) for row in removals}
    incoming: Sequence[_CodedItem] = kind.items(request)
    if request.mode == Mode.REPLACE:
        entries, removed = _replace(entries, removed, incoming, kind, coded_at)
    else:
        entries = _merge(entries, removed, incoming, kind, coded_at)
    # Stored in the order they were written, each request's items in its own order: the same codings
    # give the same list whatever order they arrived in.
    entries.sort(key=lambda entry: entry.written)
    session.execute(delete(table).where(table.encounter_id == encounter_id))
    session.execute(
        delete(CodingRemovalRow).where(
            CodingRemovalRow.encounter_id == encounter_id, CodingRemovalRow.kind == kind.name
        )
    )
    session.flush()
    session.add_all(
        table(encounter_id=encounter_id, position=position, as_of=entry.written, **entry.values)
        for position, entry in enumerate(entries)
    )
    session.add_all(
        CodingRemovalRow(encounter_id=encounter_id, kind=kind.name, item=key, as_of=when)
        for key, when in removed.items()
    )


def _apply_drg(
    row: CodingRow,
    request: billing_pb2.UpdateCodingRequest,
    coded_at: dt.datetime,
    legacy: dt.datetime | None,
) -> None:
    """Set the DRG unless a later coding wrote it; a REPLACE without one removes it, a MERGE leaves it."""
    has_drg = request.HasField("drg")
    if request.mode == Mode.MERGE and not has_drg:
        return
    written = as_utc(row.drg_as_of) if row.drg_as_of is not None else legacy
    if written is not None and written > coded_at:
        return
    row.drg_code = request.drg.code if has_drg else None
    row.drg_description = request.drg.description if has_drg else ""
    row.drg_code_system = request.drg.code_system if has_drg else ""
    row.drg_assigned_at = (
        optional_datetime(request.drg, "assigned_at", field="drg.assigned_at") if has_drg else None
    )
    row.drg_as_of = coded_at


def apply_coding(
    session: Session, request: billing_pb2.UpdateCodingRequest, digest: str, now: dt.datetime
) -> billing_pb2.UpdateCodingResponse:
    """Apply the request's coding in ``session`` unless it is a replay or older than the full coding."""
    key = request.idempotency_key
    seen = session.get(CodingUpdateRow, key)
    if seen is not None:
        if seen.request_digest != digest:
            raise reused_key(key, "another coding update")
        return billing_pb2.UpdateCodingResponse(
            encounter_id=seen.encounter_id, status=CodingStatus.DUPLICATE, version=seen.version
        )
    coded_at = request_datetime(request, "coded_at", request_id=key)
    row = session.get(CodingRow, request.encounter_id, with_for_update=True)
    horizon = _horizon(row)
    if row is not None and horizon is not None and coded_at < horizon:
        status = CodingStatus.STALE
    else:
        if row is None:
            row = CodingRow(
                encounter_id=request.encounter_id,
                coded_at=coded_at,
                drg_code=None,
                drg_description="",
                drg_code_system="",
                version=0,
                full_coding=False,
                source_event_id=request.source_event_id,
                correlation_id=request.correlation_id,
                updated_at=now,
            )
            session.add(row)
            # The coding row first: the diagnosis and procedure rows reference it.
            session.flush()
        for kind in _KINDS:
            _apply_items(session, kind, request, coded_at, horizon)
        _apply_drg(row, request, coded_at, horizon)
        if request.mode == Mode.REPLACE:
            row.replaced_at = coded_at
            row.full_coding = True
        row.coded_at = max(as_utc(row.coded_at), coded_at)
        row.version += 1
        row.source_event_id = request.source_event_id
        row.correlation_id = request.correlation_id
        row.updated_at = now
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
