"""The ERP tables: journal batches and lines of the general ledger, inventory batches and movements.

Like the contract, no table holds PHI: the encounter is only its keyed pseudonym (encounter_ref).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    ColumnExpressionArgument,
    Date,
    DateTime,
    ForeignKey,
    LargeBinary,
    String,
    cast,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "InventoryBatchRow", "InventoryMovementRow", "JournalBatchRow", "JournalLineRow", "total"]


class Base(DeclarativeBase):
    """Declarative base of the ledger tables."""

    # Cents and counts outgrow 32-bit integers (a PostgreSQL INTEGER) at $21M.
    type_annotation_map = {
        int: BigInteger,
        dt.datetime: DateTime(timezone=True),
        dt.date: Date,
        str: String(),
        bytes: LargeBinary,
    }


class JournalBatchRow(Base):
    """One processed batch and the ack it got, so a replay of its key returns that same ack."""

    __tablename__ = "erp_journal_batches"

    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(index=True)
    currency: Mapped[str]
    line_count: Mapped[int]
    accepted_count: Mapped[int]
    rejected_count: Mapped[int]
    request_digest: Mapped[str]
    ack: Mapped[bytes]
    received_at: Mapped[dt.datetime]


class JournalLineRow(Base):
    """One posted general-ledger line. Like the contract, it holds no PHI."""

    __tablename__ = "erp_journal_lines"

    line_id: Mapped[str] = mapped_column(primary_key=True)
    posting_id: Mapped[str] = mapped_column(unique=True)
    batch_key: Mapped[str] = mapped_column(ForeignKey("erp_journal_batches.idempotency_key"), index=True)
    journal_date: Mapped[dt.date]
    account: Mapped[str] = mapped_column(index=True)
    cost_centre: Mapped[str]
    facility: Mapped[str]
    debit_cents: Mapped[int]
    credit_cents: Mapped[int]
    currency: Mapped[str]
    encounter_ref: Mapped[str] = mapped_column(index=True)
    source_event_id: Mapped[str] = mapped_column(index=True)
    correlation_id: Mapped[str]
    description: Mapped[str]
    posted_at: Mapped[dt.datetime]


class InventoryBatchRow(Base):
    """One processed inventory batch and the ack it got, so a replay of its key returns that same ack."""

    __tablename__ = "erp_inventory_batches"

    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(index=True)
    movement_count: Mapped[int]
    accepted_count: Mapped[int]
    rejected_count: Mapped[int]
    request_digest: Mapped[str]
    ack: Mapped[bytes]
    received_at: Mapped[dt.datetime]


class InventoryMovementRow(Base):
    """One recorded stock movement; quantity_milli is always positive, movement_type gives the sign."""

    __tablename__ = "erp_inventory_movements"

    movement_id: Mapped[str] = mapped_column(primary_key=True)
    posting_id: Mapped[str] = mapped_column(unique=True)
    batch_key: Mapped[str] = mapped_column(ForeignKey("erp_inventory_batches.idempotency_key"), index=True)
    movement_type: Mapped[str]
    item_code: Mapped[str] = mapped_column(index=True)
    code_system: Mapped[str]
    description: Mapped[str]
    quantity_milli: Mapped[int]
    unit: Mapped[str]
    facility: Mapped[str] = mapped_column(index=True)
    cost_centre: Mapped[str]
    movement_date: Mapped[dt.date]
    encounter_ref: Mapped[str] = mapped_column(index=True)
    source_event_id: Mapped[str] = mapped_column(index=True)
    correlation_id: Mapped[str]
    posted_at: Mapped[dt.datetime]


def total(expression: ColumnExpressionArgument[int]) -> ColumnElement[int]:
    """Return SUM(expression) as a BIGINT, 0 over no rows."""
    # PostgreSQL sums a BIGINT into NUMERIC, which arrives as a Decimal that protobuf refuses.
    return cast(func.coalesce(func.sum(expression), 0), BigInteger)
