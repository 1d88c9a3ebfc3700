"""The ERP tables: journal batches and lines of the general ledger, inventory batches and movements.

Like the contract, no table holds PHI: the encounter is only its keyed pseudonym (encounter_ref).

create_schema brings a database written by an earlier release up to date: new tables are created, and a
column added to an existing table since is added with its server default, so a previous SQLite or
PostgreSQL database opens as it is. Columns are never dropped or retyped.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    LargeBinary,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from foundation.sql import create_schema as migrate
from foundation.sql import total

__all__ = [
    "Base",
    "InventoryBatchRow",
    "InventoryMovementRow",
    "JournalBatchRow",
    "JournalLineRow",
    "create_schema",
    "total",
]

log = logging.getLogger(__name__)


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
    # Added with master-data enrichment: server defaults let an earlier database gain them (see
    # create_schema). Lines posted before have an empty legal entity; new lines never do.
    legal_entity: Mapped[str] = mapped_column(server_default="")
    business_unit: Mapped[str] = mapped_column(server_default="")


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
    """One recorded stock movement; quantity_milli and value_cents are never negative, movement_type gives
    the sign."""

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
    # Added with master-data enrichment and stock valuation (see create_schema). Movements recorded
    # before are uncosted: an empty legal entity and account, no unit cost, a value of zero.
    legal_entity: Mapped[str] = mapped_column(server_default="")
    business_unit: Mapped[str] = mapped_column(server_default="")
    inventory_account: Mapped[str] = mapped_column(server_default="")
    unit_cost_cents: Mapped[int | None]  # NULL: not costed
    # quantity_milli * unit_cost_cents / 1000 rounded half up, fixed when recorded; 0 when not costed.
    value_cents: Mapped[int] = mapped_column(server_default="0")


def create_schema(engine: Engine) -> None:
    """Create missing tables, and add to existing tables the columns a later release defined."""
    migrate(engine, Base.metadata)
