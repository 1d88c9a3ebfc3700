"""The ERP backend: the interface the ErpAdapter service calls, and its SQL reference general ledger.

Every write is idempotent and the database decides: a batch is recorded under its idempotency key
with the ack it got (a replay returns that ack), and a line under its line_id (a replay is accepted as
a duplicate with the original posting_id; the same key with other lines is refused, ALREADY_EXISTS).
Every line must name its legal entity (master data enriches
it upstream). Lines are grouped by source event and each group must balance within each legal entity, so
no event posts across entities without its own balancing lines; the accepted lines of one call commit
together. Every line is checked against the master data in force (adapters.erp.masterdata): unknown
accounts, legal entities, business units, cost centres and facilities, and free-text descriptions, are
rejected. Amounts are bounded per line and per call (adapters.bounds); totals are exact sums. Inventory
movements (adapters.erp.inventory) follow the same rules, each movement judged on its own. The tables
live in adapters.erp.schema; create_schema brings an older database up to date.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from adapters import invalid_request, reused_key, unordered_digest
from adapters.bounds import MAX_CALL_CENTS, MAX_ITEMS_PER_CALL, MAX_LINE_CENTS, beyond
from adapters.erp.inventory import (
    apply_inventory_batch,
    inventory_totals,
    validate_inventory_batch,
)
from adapters.erp.masterdata import MasterDataSource, governed_masterdata, journal_text, line_master_fault
from adapters.erp.schema import JournalBatchRow, JournalLineRow, create_schema, total
from canonical.reference import MasterDataSet
from foundation.settings import get_settings
from foundation.sql import in_chunks, int64, joined, open_engine, read_transaction, write_transaction
from proto import erp_pb2

__all__ = ["ErpBackend", "SqlErpBackend"]

log = logging.getLogger(__name__)


class ErpBackend(Protocol):
    """What the ErpAdapter service needs from a general ledger."""

    def post_journal_batch(self, batch: erp_pb2.JournalBatch) -> erp_pb2.JournalAck:
        """Post a batch; a replayed idempotency key returns the original ack."""
        ...

    def ledger_totals(self) -> erp_pb2.LedgerTotals:
        """Return reconciliation totals of the ledger."""
        ...

    def post_inventory_movements(self, batch: erp_pb2.InventoryMovementBatch) -> erp_pb2.InventoryAck:
        """Record stock movements; a replayed idempotency key returns the original ack."""
        ...

    def inventory_totals(self) -> erp_pb2.InventoryTotals:
        """Return reconciliation totals of the inventory movements."""
        ...

    def close(self) -> None:
        """Release the backend's connections."""
        ...


@dataclass(slots=True)
class _Outcome:
    """What happens to one distinct line of a batch."""

    accepted: bool
    posting_id: str = ""
    duplicate: bool = False
    reason: str = ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _batch_digest(batch: erp_pb2.JournalBatch) -> str:
    """Return a digest of a batch that ignores the order of its lines, to tell a replay from a reused key."""
    envelope = erp_pb2.JournalBatch(
        batch_id=batch.batch_id, idempotency_key=batch.idempotency_key, currency=batch.currency
    )
    return unordered_digest(envelope, batch.lines)


def _validate_batch(batch: erp_pb2.JournalBatch) -> None:
    """Refuse a batch whose envelope breaks the contract, naming the field; lines are judged one by one."""
    if not batch.idempotency_key:
        raise invalid_request("idempotency_key", "is empty", request_id=batch.batch_id)
    if not batch.batch_id:
        raise invalid_request("batch_id", "is empty", request_id=batch.idempotency_key)
    if not batch.currency:
        raise invalid_request("currency", "is empty", request_id=batch.idempotency_key)
    if len(batch.lines) > MAX_ITEMS_PER_CALL:
        raise invalid_request(
            "lines", f"holds more than {MAX_ITEMS_PER_CALL} lines", request_id=batch.idempotency_key
        )
    for index, line in enumerate(batch.lines):
        if not line.line_id:
            raise invalid_request(f"lines[{index}].line_id", "is empty", request_id=batch.idempotency_key)
    # Lines beyond their own bounds (negative, or above the line bound) are rejected one by one; the
    # call's bound weighs the others.
    amounts = (
        line.debit_cents + line.credit_cents
        for line in batch.lines
        if 0 <= line.debit_cents <= MAX_LINE_CENTS and 0 <= line.credit_cents <= MAX_LINE_CENTS
    )
    if sum(amounts) > MAX_CALL_CENTS:
        raise invalid_request(
            "lines",
            f"debit_cents and credit_cents summed {beyond(MAX_CALL_CENTS, 'cents per call')}",
            request_id=batch.idempotency_key,
        )


def _line_fault(line: erp_pb2.JournalLine, currency: str, data: MasterDataSet) -> str:
    """Return why a line cannot be posted, or an empty string when it is well formed and master data."""
    if line.debit_cents < 0 or line.credit_cents < 0:
        return f"line {line.line_id}: debit_cents and credit_cents cannot be negative"
    for name in ("debit_cents", "credit_cents"):
        if getattr(line, name) > MAX_LINE_CENTS:
            return f"line {line.line_id}: {name} {beyond(MAX_LINE_CENTS, 'cents')}"
    if (line.debit_cents > 0) == (line.credit_cents > 0):
        return f"line {line.line_id}: needs exactly one of debit_cents or credit_cents above zero"
    if not line.account:
        return f"line {line.line_id}: account is empty"
    if not line.legal_entity.strip():
        return f"line {line.line_id}: legal_entity is empty: the line was not enriched with master data"
    if line.currency != currency:
        return f"line {line.line_id}: currency {line.currency!r} does not match batch currency {currency!r}"
    if not line.source_event_id:
        return f"line {line.line_id}: source_event_id is empty, so the line cannot be balanced"
    try:
        dt.date.fromisoformat(line.journal_date)
    except ValueError:
        return f"line {line.line_id}: journal_date is not a YYYY-MM-DD date"
    return line_master_fault(line, data)


def _group_faults(lines: list[erp_pb2.JournalLine], currency: str, data: MasterDataSet) -> dict[str, str]:
    """Judge each source-event group of distinct lines; return the reason for every line that must go."""
    groups: dict[str, list[erp_pb2.JournalLine]] = defaultdict(list)
    for line in lines:
        groups[line.source_event_id].append(line)
    faults: dict[str, str] = {}
    for event_id, members in groups.items():
        own = {line.line_id: _line_fault(line, currency, data) for line in members}
        bad = [line_id for line_id, fault in own.items() if fault]
        if bad:
            # Posting the good lines of a broken event would leave the ledger out of balance.
            for line_id, fault in own.items():
                faults[line_id] = fault or f"event {event_id}: rejected with invalid line {bad[0]}"
            continue
        if reason := _imbalance(event_id, members, currency):
            faults.update(dict.fromkeys(own, reason))
    return faults


def _imbalance(event_id: str, members: list[erp_pb2.JournalLine], currency: str) -> str:
    """Return why the well-formed lines of one event do not balance, or an empty string when they do."""
    debit = sum(line.debit_cents for line in members)
    credit = sum(line.credit_cents for line in members)
    if debit != credit:
        return (
            f"event {event_id} does not balance: debit {debit} != credit {credit} {currency} cents "
            f"over {len(members)} lines"
        )
    # Each legal entity keeps its own books: an event balanced only across entities would silently post
    # an inter-company amount that neither entity's ledger explains.
    by_entity: dict[str, list[erp_pb2.JournalLine]] = defaultdict(list)
    for line in members:
        by_entity[line.legal_entity].append(line)
    for entity, lines in sorted(by_entity.items()):
        entity_debit = sum(line.debit_cents for line in lines)
        entity_credit = sum(line.credit_cents for line in lines)
        if entity_debit != entity_credit:
            return (
                f"event {event_id} does not balance within legal entity {entity}: debit {entity_debit} != "
                f"credit {entity_credit} {currency} cents over {len(lines)} lines (it balances only across "
                f"legal entities {', '.join(sorted(by_entity))}; inter-company postings need balancing "
                "lines in each entity)"
            )
    return ""


class SqlErpBackend:
    """The reference general ledger: journal batches and lines in SQL (SQLite file or PostgreSQL)."""

    def __init__(self, database_url: str, masterdata: MasterDataSource | None = None) -> None:
        """Open the ledger at ``database_url``; ``masterdata`` returns the set in force (by default the
        deployment's governed master data in Redis, read as the settings name it)."""
        self._engine = open_engine(database_url)
        create_schema(self._engine)
        self._masterdata = masterdata or governed_masterdata(get_settings())

    def close(self) -> None:
        """Release the backend's connections."""
        self._engine.dispose()

    def post_journal_batch(self, batch: erp_pb2.JournalBatch) -> erp_pb2.JournalAck:
        """Post a batch; a replayed idempotency key returns the original ack."""
        _validate_batch(batch)
        digest = _batch_digest(batch)
        data = self._masterdata()  # before the transaction: a Redis read must not hold the write lock
        ack = write_transaction(self._engine, lambda session: self._post(session, batch, digest, data))
        log.info(
            "journal batch %s (%s): %d lines, %d accepted (%d duplicate), %d rejected",
            batch.batch_id,
            batch.idempotency_key,
            len(batch.lines),
            len(ack.accepted),
            sum(1 for line in ack.accepted if line.duplicate),
            len(ack.rejected),
        )
        return ack

    def _post(
        self, session: Session, batch: erp_pb2.JournalBatch, digest: str, data: MasterDataSet
    ) -> erp_pb2.JournalAck:
        key = batch.idempotency_key
        seen = session.get(JournalBatchRow, key)
        if seen is not None:
            if seen.request_digest != digest:
                raise reused_key(key, "another journal batch")
            return erp_pb2.JournalAck.FromString(seen.ack)

        # A line_id repeated within the batch is the same line: its first occurrence is judged and posted.
        first: dict[str, erp_pb2.JournalLine] = {}
        for line in batch.lines:
            first.setdefault(line.line_id, line)
        stored: dict[str, str] = {}
        for chunk in in_chunks(list(first)):
            query = select(JournalLineRow.line_id, JournalLineRow.posting_id)
            rows = session.execute(query.where(JournalLineRow.line_id.in_(chunk)))
            stored.update({line_id: posting_id for line_id, posting_id in rows})
        # Balance is judged on the request's content, stored lines included, so a group can be
        # completed by a later call without its already-posted half being counted as missing.
        faults = _group_faults(list(first.values()), batch.currency, data)

        now = _now()
        # The batch row goes first: its lines reference it.
        batch_row = JournalBatchRow(
            idempotency_key=key,
            batch_id=batch.batch_id,
            currency=batch.currency,
            line_count=len(batch.lines),
            accepted_count=0,
            rejected_count=0,
            request_digest=digest,
            ack=b"",
            received_at=now,
        )
        session.add(batch_row)
        session.flush()

        outcomes: dict[str, _Outcome] = {}
        new_rows: list[dict[str, object]] = []
        for line_id, line in first.items():
            if line_id in stored:
                # The ledger already has it; that is the truth whatever this copy says.
                outcomes[line_id] = _Outcome(accepted=True, posting_id=stored[line_id], duplicate=True)
            elif line_id in faults:
                outcomes[line_id] = _Outcome(accepted=False, reason=faults[line_id])
            else:
                posting_id = f"GL-{uuid.uuid4().hex}"
                new_rows.append(_line_row(line, posting_id, key, now, data))
                outcomes[line_id] = _Outcome(accepted=True, posting_id=posting_id)
        if new_rows:
            # One bulk INSERT (executemany) instead of the unit of work's per-object bookkeeping: the
            # ledger's lines are written, never read back in this transaction.
            session.execute(insert(JournalLineRow), new_rows)

        ack = erp_pb2.JournalAck(batch_id=batch.batch_id)
        reported: set[str] = set()
        for line in batch.lines:
            outcome = outcomes[line.line_id]
            repeat = line.line_id in reported
            reported.add(line.line_id)
            if outcome.accepted:
                ack.accepted.add(
                    line_id=line.line_id, posting_id=outcome.posting_id, duplicate=outcome.duplicate or repeat
                )
            else:
                ack.rejected.add(line_id=line.line_id, reason=outcome.reason)
        batch_row.accepted_count = len(ack.accepted)
        batch_row.rejected_count = len(ack.rejected)
        batch_row.ack = ack.SerializeToString(deterministic=True)
        # Flush inside the transaction so a lost race surfaces here as IntegrityError and is rerun.
        session.flush()
        return ack

    def ledger_totals(self) -> erp_pb2.LedgerTotals:
        """Return reconciliation totals of the ledger."""
        return read_transaction(self._engine, _ledger_totals)

    def post_inventory_movements(self, batch: erp_pb2.InventoryMovementBatch) -> erp_pb2.InventoryAck:
        """Record stock movements; a replayed idempotency key returns the original ack."""
        validate_inventory_batch(batch)
        envelope = erp_pb2.InventoryMovementBatch(
            batch_id=batch.batch_id, idempotency_key=batch.idempotency_key
        )
        digest = unordered_digest(envelope, batch.movements)
        data = self._masterdata()
        ack = write_transaction(
            self._engine, lambda session: apply_inventory_batch(session, batch, digest, _now(), data)
        )
        log.info(
            "inventory batch %s (%s): %d movements, %d accepted (%d duplicate), %d rejected",
            batch.batch_id,
            batch.idempotency_key,
            len(batch.movements),
            len(ack.accepted),
            sum(1 for movement in ack.accepted if movement.duplicate),
            len(ack.rejected),
        )
        return ack

    def inventory_totals(self) -> erp_pb2.InventoryTotals:
        """Return reconciliation totals of the inventory movements."""
        return read_transaction(self._engine, inventory_totals)


def _line_row(
    line: erp_pb2.JournalLine, posting_id: str, batch_key: str, now: dt.datetime, data: MasterDataSet
) -> dict[str, object]:
    """Return the row of a newly accepted line, for a bulk insert; its text is master data's."""
    return {
        "line_id": line.line_id,
        "posting_id": posting_id,
        "batch_key": batch_key,
        "journal_date": dt.date.fromisoformat(line.journal_date),
        "account": line.account,
        "cost_centre": line.cost_centre,
        "facility": line.facility,
        "legal_entity": line.legal_entity,
        "business_unit": line.business_unit,
        "debit_cents": line.debit_cents,
        "credit_cents": line.credit_cents,
        "currency": line.currency,
        "encounter_ref": line.encounter_ref,
        "source_event_id": line.source_event_id,
        "correlation_id": line.correlation_id,
        "description": journal_text(line.description, data) or "",
        "posted_at": now,
    }


def _ledger_totals(session: Session) -> erp_pb2.LedgerTotals:
    """Compute ledger totals in one snapshot; sums are exact whatever the rows (foundation.sql.total)."""
    line_count, debit_high, debit_low, credit_high, credit_low = session.execute(
        select(
            func.count(),
            *total(JournalLineRow.debit_cents),
            *total(JournalLineRow.credit_cents),
        ).select_from(JournalLineRow)
    ).one()
    batch_count = session.scalar(select(func.count()).select_from(JournalBatchRow)) or 0
    totals = erp_pb2.LedgerTotals(
        line_count=line_count,
        batch_count=batch_count,
        total_debit_cents=int64(joined(debit_high, debit_low), "ledger total_debit_cents"),
        total_credit_cents=int64(joined(credit_high, credit_low), "ledger total_credit_cents"),
    )
    row = JournalLineRow
    by_account = session.execute(
        select(
            row.legal_entity,
            row.account,
            row.cost_centre,
            *total(row.debit_cents),
            *total(row.credit_cents),
            func.count(),
        )
        .group_by(row.legal_entity, row.account, row.cost_centre)
        .order_by(row.legal_entity, row.account, row.cost_centre)
    )
    for legal_entity, account, cost_centre, d_high, d_low, c_high, c_low, count in by_account:
        totals.by_account.add(
            legal_entity=legal_entity,
            account=account,
            cost_centre=cost_centre,
            debit_cents=int64(joined(d_high, d_low), "ledger debit_cents of an account"),
            credit_cents=int64(joined(c_high, c_low), "ledger credit_cents of an account"),
            line_count=count,
        )
    return totals
