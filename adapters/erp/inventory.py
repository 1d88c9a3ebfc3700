"""PostInventoryMovements and GetInventoryTotals: stock issued to and returned from patients' care.

A batch is recorded under its idempotency key with the ack it got (a replay returns that ack), and a
movement under its movement_id (a replay is accepted as a duplicate with the original posting_id).
Each movement is judged on its own: a malformed one is rejected with a reason, the others commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable

from google.protobuf.message import Message
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from adapters import in_chunks, invalid_request
from adapters.erp.schema import InventoryBatchRow, InventoryMovementRow, total
from canonical.models import MovementType
from proto import erp_pb2

__all__ = ["apply_inventory_batch", "inventory_totals", "unordered_digest", "validate_inventory_batch"]

_MOVEMENT_TYPES = {kind.value for kind in MovementType}


def unordered_digest(envelope: Message, items: Iterable[Message]) -> str:
    """Return a digest of a batch that ignores the order of its items, to tell a replay from a reused key."""
    # A caller that rebuilds a batch may list the same items in another order; that is still a replay.
    digest = hashlib.sha256(envelope.SerializeToString(deterministic=True))
    for item in sorted(item.SerializeToString(deterministic=True) for item in items):
        # Length-prefixed, so two different item lists can never concatenate to the same bytes.
        digest.update(len(item).to_bytes(8, "big"))
        digest.update(item)
    return digest.hexdigest()


def validate_inventory_batch(batch: erp_pb2.InventoryMovementBatch) -> None:
    """Refuse a batch whose envelope breaks the contract, naming the field; movements are judged alone."""
    if not batch.idempotency_key:
        raise invalid_request("idempotency_key", "is empty", request_id=batch.batch_id)
    if not batch.batch_id:
        raise invalid_request("batch_id", "is empty", request_id=batch.idempotency_key)
    for index, movement in enumerate(batch.movements):
        if not movement.movement_id:
            raise invalid_request(
                f"movements[{index}].movement_id", "is empty", request_id=batch.idempotency_key
            )


def movement_fault(movement: erp_pb2.InventoryMovement) -> str:
    """Return why a movement cannot be recorded, or an empty string when it is well formed."""
    where = f"movement {movement.movement_id}"
    if movement.movement_type not in _MOVEMENT_TYPES:
        kinds = " or ".join(sorted(_MOVEMENT_TYPES))
        return f"{where}: movement_type must be {kinds}, got {movement.movement_type!r}"
    if not movement.item_code:
        return f"{where}: item_code is empty"
    if movement.quantity_milli <= 0:
        return f"{where}: quantity_milli must be above zero, got {movement.quantity_milli}"
    if not movement.facility:
        return f"{where}: facility is empty"
    try:
        dt.date.fromisoformat(movement.movement_date)
    except ValueError:
        return f"{where}: movement_date {movement.movement_date!r} is not a YYYY-MM-DD date"
    return ""


def apply_inventory_batch(
    session: Session, batch: erp_pb2.InventoryMovementBatch, digest: str, now: dt.datetime
) -> erp_pb2.InventoryAck:
    """Record a batch's movements in ``session``; a replayed key returns the original ack."""
    key = batch.idempotency_key
    seen = session.get(InventoryBatchRow, key)
    if seen is not None:
        if seen.request_digest != digest:
            raise invalid_request("idempotency_key", "was already used for a different batch", request_id=key)
        return erp_pb2.InventoryAck.FromString(seen.ack)

    # A movement_id repeated within the batch is the same movement: its first occurrence is judged.
    first: dict[str, erp_pb2.InventoryMovement] = {}
    for movement in batch.movements:
        first.setdefault(movement.movement_id, movement)
    stored: dict[str, str] = {}
    for chunk in in_chunks(list(first)):
        query = select(InventoryMovementRow.movement_id, InventoryMovementRow.posting_id)
        rows = session.execute(query.where(InventoryMovementRow.movement_id.in_(chunk)))
        stored.update({movement_id: posting_id for movement_id, posting_id in rows})

    # The batch row goes first: its movements reference it.
    batch_row = InventoryBatchRow(
        idempotency_key=key,
        batch_id=batch.batch_id,
        movement_count=len(batch.movements),
        accepted_count=0,
        rejected_count=0,
        request_digest=digest,
        ack=b"",
        received_at=now,
    )
    session.add(batch_row)
    session.flush()

    postings: dict[str, tuple[str, bool]] = {}  # movement_id -> (posting_id, duplicate)
    faults: dict[str, str] = {}
    for movement_id, movement in first.items():
        if movement_id in stored:
            # Recorded before; that is the truth whatever this copy says.
            postings[movement_id] = (stored[movement_id], True)
        elif fault := movement_fault(movement):
            faults[movement_id] = fault
        else:
            posting_id = f"IM-{uuid.uuid4().hex}"
            session.add(_movement_row(movement, posting_id, key, now))
            postings[movement_id] = (posting_id, False)

    ack = erp_pb2.InventoryAck(batch_id=batch.batch_id)
    reported: set[str] = set()
    for movement in batch.movements:
        movement_id = movement.movement_id
        repeat = movement_id in reported
        reported.add(movement_id)
        if movement_id in postings:
            posting_id, duplicate = postings[movement_id]
            ack.accepted.add(movement_id=movement_id, posting_id=posting_id, duplicate=duplicate or repeat)
        else:
            ack.rejected.add(movement_id=movement_id, reason=faults[movement_id])
    batch_row.accepted_count = len(ack.accepted)
    batch_row.rejected_count = len(ack.rejected)
    batch_row.ack = ack.SerializeToString(deterministic=True)
    # Flush inside the transaction so a lost race surfaces here as IntegrityError and is rerun.
    session.flush()
    return ack


def _movement_row(
    movement: erp_pb2.InventoryMovement, posting_id: str, batch_key: str, now: dt.datetime
) -> InventoryMovementRow:
    """Build the row of a newly accepted movement."""
    return InventoryMovementRow(
        movement_id=movement.movement_id,
        posting_id=posting_id,
        batch_key=batch_key,
        movement_type=movement.movement_type,
        item_code=movement.item_code,
        code_system=movement.code_system,
        description=movement.description,
        quantity_milli=movement.quantity_milli,
        unit=movement.unit,
        facility=movement.facility,
        cost_centre=movement.cost_centre,
        movement_date=dt.date.fromisoformat(movement.movement_date),
        encounter_ref=movement.encounter_ref,
        source_event_id=movement.source_event_id,
        correlation_id=movement.correlation_id,
        posted_at=now,
    )


def inventory_totals(session: Session) -> erp_pb2.InventoryTotals:
    """Compute inventory totals in one snapshot."""
    row = InventoryMovementRow
    issued = total(case((row.movement_type == MovementType.ISSUE.value, row.quantity_milli), else_=0))
    returned = total(case((row.movement_type == MovementType.RETURN.value, row.quantity_milli), else_=0))
    count, issued_milli, returned_milli = session.execute(
        select(func.count(), issued, returned).select_from(row)
    ).one()
    batch_count = session.scalar(select(func.count()).select_from(InventoryBatchRow)) or 0
    totals = erp_pb2.InventoryTotals(
        movement_count=count,
        batch_count=batch_count,
        issued_milli=issued_milli,
        returned_milli=returned_milli,
    )
    by_item = session.execute(
        select(row.facility, row.item_code, issued, returned, func.count())
        .group_by(row.facility, row.item_code)
        .order_by(row.facility, row.item_code)
    )
    for facility, item_code, item_issued, item_returned, item_count in by_item:
        totals.by_item.add(
            facility=facility,
            item_code=item_code,
            issued_milli=item_issued,
            returned_milli=item_returned,
            net_milli=item_issued - item_returned,
            movement_count=item_count,
        )
    return totals
