"""PostInventoryMovements and GetInventoryTotals: stock issued to and returned from patients' care.

A batch is recorded under its idempotency key with the ack it got (a replay returns that ack), and a
movement under its movement_id (a replay is accepted as a duplicate with the original posting_id).
Each movement is judged on its own: a malformed one is rejected with a reason, the others commit. A
movement must name the legal entity that owns the stock (master data enriches it upstream).

Stock is valued at the item master's standard cost: each movement is worth quantity_milli *
unit_cost_cents / 1000, rounded half up to the cent once, when it is recorded (as canonical
InventoryMovement.value_cents does). A movement without a unit cost is not costed and adds no value.
Totals give the net value, issued minus returned, per facility and item, overall and per legal entity
and inventory account.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from adapters import invalid_request, reused_key
from adapters.bounds import MAX_CALL_CENTS, MAX_ITEMS_PER_CALL, MAX_LINE_CENTS, MAX_QUANTITY_MILLI, beyond
from adapters.erp.masterdata import movement_master_fault, movement_text
from adapters.erp.schema import InventoryBatchRow, InventoryMovementRow, total
from canonical.models import MovementType, stock_value_cents
from canonical.reference import MasterDataSet
from foundation.sql import in_chunks, int64, joined
from proto import erp_pb2

__all__ = [
    "apply_inventory_batch",
    "inventory_totals",
    "movement_fault",
    "movement_value",
    "validate_inventory_batch",
]

_MOVEMENT_TYPES = {kind.value for kind in MovementType}


def movement_value(movement: erp_pb2.InventoryMovement) -> int:
    """Return the standard-cost value of a movement in cents, rounded half up; 0 when it is not costed."""
    if not movement.HasField("unit_cost_cents"):
        return 0
    return stock_value_cents(movement.quantity_milli, movement.unit_cost_cents)


def validate_inventory_batch(batch: erp_pb2.InventoryMovementBatch) -> None:
    """Refuse a batch whose envelope breaks the contract, naming the field; movements are judged alone."""
    if not batch.idempotency_key:
        raise invalid_request("idempotency_key", "is empty", request_id=batch.batch_id)
    if not batch.batch_id:
        raise invalid_request("batch_id", "is empty", request_id=batch.idempotency_key)
    if len(batch.movements) > MAX_ITEMS_PER_CALL:
        raise invalid_request(
            "movements", f"holds more than {MAX_ITEMS_PER_CALL} movements", request_id=batch.idempotency_key
        )
    for index, movement in enumerate(batch.movements):
        if not movement.movement_id:
            raise invalid_request(
                f"movements[{index}].movement_id", "is empty", request_id=batch.idempotency_key
            )
    # Movements beyond their own bounds are rejected one by one; the call's bound weighs the others.
    values = (movement_value(movement) for movement in batch.movements if _within_bounds(movement))
    if sum(values) > MAX_CALL_CENTS:
        raise invalid_request(
            "movements",
            f"values at standard cost summed {beyond(MAX_CALL_CENTS, 'cents per call')}",
            request_id=batch.idempotency_key,
        )


def _within_bounds(movement: erp_pb2.InventoryMovement) -> bool:
    """Whether a movement's quantity and unit cost are within the bounds its own checks enforce."""
    return (
        0 < movement.quantity_milli <= MAX_QUANTITY_MILLI and 0 <= movement.unit_cost_cents <= MAX_LINE_CENTS
    )


def movement_fault(movement: erp_pb2.InventoryMovement, data: MasterDataSet) -> str:
    """Return why a movement cannot be recorded, or an empty string when it is well formed and master data."""
    where = f"movement {movement.movement_id}"
    if movement.movement_type not in _MOVEMENT_TYPES:
        kinds = " or ".join(sorted(_MOVEMENT_TYPES))
        return f"{where}: movement_type must be {kinds}, got {movement.movement_type!r}"
    if not movement.item_code:
        return f"{where}: item_code is empty"
    if movement.quantity_milli <= 0:
        return f"{where}: quantity_milli must be above zero, got {movement.quantity_milli}"
    if movement.quantity_milli > MAX_QUANTITY_MILLI:
        return f"{where}: quantity_milli {beyond(MAX_QUANTITY_MILLI, 'thousandths of a unit')}"
    if not movement.facility:
        return f"{where}: facility is empty"
    if not movement.legal_entity.strip():
        return f"{where}: legal_entity is empty: the movement was not enriched with master data"
    if movement.HasField("unit_cost_cents"):
        if movement.unit_cost_cents < 0:
            return f"{where}: unit_cost_cents cannot be negative, got {movement.unit_cost_cents}"
        if movement.unit_cost_cents > MAX_LINE_CENTS:
            return f"{where}: unit_cost_cents {beyond(MAX_LINE_CENTS, 'cents')}"
        if movement_value(movement) > MAX_LINE_CENTS:
            return f"{where}: quantity_milli at unit_cost_cents is worth more than {MAX_LINE_CENTS} cents"
    try:
        dt.date.fromisoformat(movement.movement_date)
    except ValueError:
        return f"{where}: movement_date is not a YYYY-MM-DD date"
    return movement_master_fault(movement, data)


def apply_inventory_batch(
    session: Session,
    batch: erp_pb2.InventoryMovementBatch,
    digest: str,
    now: dt.datetime,
    data: MasterDataSet,
) -> erp_pb2.InventoryAck:
    """Record a batch's movements in ``session``, checked against master data ``data``; a replayed key
    returns the original ack, a reused one (other movements) is refused."""
    key = batch.idempotency_key
    seen = session.get(InventoryBatchRow, key)
    if seen is not None:
        if seen.request_digest != digest:
            raise reused_key(key, "another inventory batch")
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
        elif fault := movement_fault(movement, data):
            faults[movement_id] = fault
        else:
            posting_id = f"IM-{uuid.uuid4().hex}"
            session.add(_movement_row(movement, posting_id, key, now, movement_text(movement, data) or ""))
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
    movement: erp_pb2.InventoryMovement, posting_id: str, batch_key: str, now: dt.datetime, text: str
) -> InventoryMovementRow:
    """Build the row of a newly accepted movement; ``text`` is the item master's description."""
    return InventoryMovementRow(
        movement_id=movement.movement_id,
        posting_id=posting_id,
        batch_key=batch_key,
        movement_type=movement.movement_type,
        item_code=movement.item_code,
        code_system=movement.code_system,
        description=text,
        quantity_milli=movement.quantity_milli,
        unit=movement.unit,
        facility=movement.facility,
        cost_centre=movement.cost_centre,
        legal_entity=movement.legal_entity,
        business_unit=movement.business_unit,
        inventory_account=movement.inventory_account,
        unit_cost_cents=movement.unit_cost_cents if movement.HasField("unit_cost_cents") else None,
        value_cents=movement_value(movement),
        movement_date=dt.date.fromisoformat(movement.movement_date),
        encounter_ref=movement.encounter_ref,
        source_event_id=movement.source_event_id,
        correlation_id=movement.correlation_id,
        posted_at=now,
    )


def inventory_totals(session: Session) -> erp_pb2.InventoryTotals:
    """Compute inventory totals in one snapshot; sums are exact whatever the rows (foundation.sql.total)."""
    row = InventoryMovementRow
    is_issue = row.movement_type == MovementType.ISSUE.value
    is_return = row.movement_type == MovementType.RETURN.value
    # Four exact sums, each a (high, low) pair: issued and returned quantities and values. The net value
    # (an issue takes stock out of the inventory account, a return puts it back) is their difference,
    # taken in Python, so no negation or subtraction can overflow in SQL.
    sums = (
        *total(case((is_issue, row.quantity_milli), else_=0)),
        *total(case((is_return, row.quantity_milli), else_=0)),
        *total(case((is_issue, row.value_cents), else_=0)),
        *total(case((is_return, row.value_cents), else_=0)),
    )
    count, *halves = session.execute(select(func.count(), *sums).select_from(row)).one()
    issued, returned, value = _quantities_and_value(halves)
    batch_count = session.scalar(select(func.count()).select_from(InventoryBatchRow)) or 0
    totals = erp_pb2.InventoryTotals(
        movement_count=count,
        batch_count=batch_count,
        issued_milli=int64(issued, "inventory issued_milli"),
        returned_milli=int64(returned, "inventory returned_milli"),
        value_cents=int64(value, "inventory value_cents"),
    )
    by_item = session.execute(
        select(row.facility, row.item_code, func.count(), *sums)
        .group_by(row.facility, row.item_code)
        .order_by(row.facility, row.item_code)
    )
    for facility, item_code, item_count, *item_halves in by_item:
        item_issued, item_returned, item_value = _quantities_and_value(item_halves)
        totals.by_item.add(
            facility=facility,
            item_code=item_code,
            issued_milli=int64(item_issued, "inventory issued_milli of an item"),
            returned_milli=int64(item_returned, "inventory returned_milli of an item"),
            net_milli=int64(item_issued - item_returned, "inventory net_milli of an item"),
            movement_count=item_count,
            value_cents=int64(item_value, "inventory value_cents of an item"),
        )
    by_account = session.execute(
        select(row.legal_entity, row.inventory_account, func.count(), *sums)
        .group_by(row.legal_entity, row.inventory_account)
        .order_by(row.legal_entity, row.inventory_account)
    )
    for legal_entity, inventory_account, account_count, *account_halves in by_account:
        _, _, account_value = _quantities_and_value(account_halves)
        totals.by_inventory_account.add(
            legal_entity=legal_entity,
            inventory_account=inventory_account,
            value_cents=int64(account_value, "inventory value_cents of an account"),
            movement_count=account_count,
        )
    return totals


def _quantities_and_value(halves: Sequence[int]) -> tuple[int, int, int]:
    """Return issued and returned thousandths and the net value from the eight halves of the four sums."""
    issued, returned, issued_value, returned_value = (
        joined(halves[i], halves[i + 1]) for i in range(0, 8, 2)
    )
    return issued, returned, issued_value - returned_value
