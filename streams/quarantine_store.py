"""The quarantine store: every ExceptionRecord, queryable, with its original bytes and replay status.

One row per record id. The record id is deterministic (the same item failing the same way gives the same
id), so a repeat of a failure counts another occurrence on the existing row instead of adding one, and
the exact same record delivered twice (the exceptions topic is at-least-once) changes nothing. SQLite in
WAL mode by default, PostgreSQL by URL, both through the adapters' engine and transaction helpers.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import DateTime, Dialect, Integer, LargeBinary, String, Text, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from adapters import distinct, in_chunks, open_engine, read_transaction, write_transaction
from canonical.quarantine import ExceptionRecord
from cluster.settings import Settings

__all__ = [
    "STATUSES",
    "CountField",
    "QuarantineItem",
    "QuarantineStore",
    "Status",
    "default_quarantine_url",
    "sqlite_path",
]

Status = Literal["open", "replayed", "resolved"]
STATUSES: tuple[Status, ...] = ("open", "replayed", "resolved")
CountField = Literal["stage", "rule", "status"]


def default_quarantine_url(settings: Settings) -> str:
    """Return the store's URL: the setting, else quarantine.db in this run, else in the latest run."""
    if settings.quarantine_database_url:
        return settings.quarantine_database_url
    if settings.run_dir is not None:
        return f"sqlite:///{settings.run_dir / 'quarantine.db'}"
    # Outside the stack (the CLI next to a running `hcsync up`): the run that runs/latest points at.
    return f"sqlite:///{settings.home_dir.resolve() / 'runs' / 'latest' / 'quarantine.db'}"


def sqlite_path(database_url: str) -> Path | None:
    """Return the file of a SQLite URL, or None for another database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database).expanduser()


def _utc(value: dt.datetime) -> dt.datetime:
    """Return an aware UTC datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = _utc(value)
        # SQLite keeps timestamps as text with no zone: store naive UTC so text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else _utc(value)


class Base(DeclarativeBase):
    """Declarative base of the quarantine table."""

    type_annotation_map = {dt.datetime: UtcDateTime(), str: String()}


class QuarantineRow(Base):
    """One quarantined item: the ExceptionRecord fields, its original bytes and its replay status."""

    __tablename__ = "quarantine_items"

    record_id: Mapped[str] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(index=True)
    source_system: Mapped[str]
    message_key: Mapped[str]
    source_message_id: Mapped[str] = mapped_column(index=True)
    encounter_id: Mapped[str | None] = mapped_column(index=True)
    rule: Mapped[str] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text)
    segment: Mapped[str]
    field: Mapped[str]
    position: Mapped[int | None] = mapped_column(Integer)
    found: Mapped[str] = mapped_column(Text)
    original: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[dt.datetime]
    first_seen_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime] = mapped_column(index=True)
    occurrences: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(index=True)
    status_changed_at: Mapped[dt.datetime | None]
    replayed_at: Mapped[dt.datetime | None]
    replay_count: Mapped[int] = mapped_column(Integer)


class QuarantineItem(BaseModel):
    """What the store tells about a quarantined item, without its original bytes."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    stage: str
    source_system: str
    message_key: str
    source_message_id: str
    encounter_id: str | None
    rule: str
    reason: str
    segment: str
    field: str
    position: int | None
    found: str
    original_size: int
    recorded_at: AwareDatetime
    first_seen_at: AwareDatetime
    last_seen_at: AwareDatetime
    occurrences: int
    status: Status
    status_changed_at: AwareDatetime | None
    replayed_at: AwareDatetime | None
    replay_count: int


def _item(row: QuarantineRow) -> QuarantineItem:
    return QuarantineItem(
        record_id=row.record_id,
        stage=row.stage,
        source_system=row.source_system,
        message_key=row.message_key,
        source_message_id=row.source_message_id,
        encounter_id=row.encounter_id,
        rule=row.rule,
        reason=row.reason,
        segment=row.segment,
        field=row.field,
        position=row.position,
        found=row.found,
        original_size=len(row.original),
        recorded_at=row.recorded_at,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        occurrences=row.occurrences,
        status=row.status,
        status_changed_at=row.status_changed_at,
        replayed_at=row.replayed_at,
        replay_count=row.replay_count,
    )


def _text(value: str) -> str:
    """Return ``value`` storable in any text column: PostgreSQL refuses NUL characters in text."""
    # Bad input quoted in a reason can hold NUL; refused, the batch would be retried forever.
    return value.replace("\x00", "\\x00")


def _new_row(record: ExceptionRecord) -> QuarantineRow:
    at = _utc(record.recorded_at)
    return QuarantineRow(
        record_id=record.record_id,
        stage=_text(record.stage),
        source_system=_text(record.source_system),
        message_key=_text(record.message_key),
        source_message_id=_text(record.source_message_id),
        encounter_id=None if record.encounter_id is None else _text(record.encounter_id),
        rule=_text(record.rule),
        reason=_text(record.reason),
        segment=_text(record.segment),
        field=_text(record.field),
        position=record.position,
        found=_text(record.found),
        original=record.original,
        recorded_at=at,
        first_seen_at=at,
        last_seen_at=at,
        occurrences=1,
        status="open",
        status_changed_at=None,
        replayed_at=None,
        replay_count=0,
    )


def _repeat(row: QuarantineRow, record: ExceptionRecord) -> bool:
    """Count ``record`` as another occurrence of ``row``; return False when it is a redelivery."""
    at = _utc(record.recorded_at)
    # The same record delivered again (same failure time) is not a new failure: add stays idempotent.
    if at in (row.first_seen_at, row.last_seen_at):
        return False
    row.occurrences += 1
    if at < row.first_seen_at:
        row.first_seen_at = at
    if at > row.last_seen_at:
        row.last_seen_at = at
        # The latest failure's details are the ones to act on (a replay can fail differently located).
        row.recorded_at = at
        row.reason = _text(record.reason)
        row.found = _text(record.found)
        if record.encounter_id and not row.encounter_id:
            row.encounter_id = _text(record.encounter_id)
    # A failure after it was replayed or resolved means the fix did not hold: it needs attention again.
    if row.status != "open" and (row.status_changed_at is None or at > row.status_changed_at):
        row.status = "open"
        row.status_changed_at = at
    return True


class QuarantineStore:
    """Quarantined items in a SQL database: add, query, read originals and track replay and resolution."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engine = open_engine(database_url)
        Base.metadata.create_all(self._engine)

    def close(self) -> None:
        """Release the store's connections."""
        self._engine.dispose()

    def add(self, records: Sequence[ExceptionRecord]) -> int:
        """Store records in one transaction; return how many were new items or new occurrences."""

        def work(session: Session) -> int:
            ids = distinct(record.record_id for record in records)
            rows: dict[str, QuarantineRow] = {}
            for chunk in in_chunks(ids):
                found = session.scalars(select(QuarantineRow).where(QuarantineRow.record_id.in_(chunk)))
                rows.update((row.record_id, row) for row in found)
            changed = 0
            for record in records:
                row = rows.get(record.record_id)
                if row is None:
                    rows[record.record_id] = row = _new_row(record)
                    session.add(row)
                    changed += 1
                elif _repeat(row, record):
                    changed += 1
            return changed

        if not records:
            return 0
        # A concurrent writer inserting the same id makes write_transaction rerun this as a repeat.
        return write_transaction(self._engine, work)

    def list(
        self,
        *,
        stage: str | None = None,
        rule: str | None = None,
        status: Status | None = None,
        encounter_id: str | None = None,
        message_id: str | None = None,
        since: dt.datetime | None = None,
        limit: int | None = 100,
    ) -> builtins.list[QuarantineItem]:
        """Return matching items, most recently seen first; ``limit=None`` returns them all."""
        query = select(QuarantineRow)
        conditions: dict[str, Any] = {
            "stage": stage,
            "rule": rule,
            "status": status,
            "encounter_id": encounter_id,
            "source_message_id": message_id,
        }
        for name, value in conditions.items():
            if value is not None:
                query = query.where(getattr(QuarantineRow, name) == value)
        if since is not None:
            query = query.where(QuarantineRow.last_seen_at >= _utc(since))
        query = query.order_by(QuarantineRow.last_seen_at.desc(), QuarantineRow.record_id)
        if limit is not None:
            query = query.limit(limit)
        return read_transaction(self._engine, lambda s: [_item(row) for row in s.scalars(query)])

    def get(self, record_id: str) -> QuarantineItem | None:
        """Return one item, or None when the store does not hold it."""

        def work(session: Session) -> QuarantineItem | None:
            row = session.get(QuarantineRow, record_id)
            return None if row is None else _item(row)

        return read_transaction(self._engine, work)

    def original(self, record_id: str) -> bytes:
        """Return the original bytes of an item exactly as quarantined; KeyError when unknown."""
        query = select(QuarantineRow.original).where(QuarantineRow.record_id == record_id)
        value = read_transaction(self._engine, lambda s: s.scalar(query))
        if value is None:
            raise KeyError(record_id)
        return bytes(value)

    def mark_replayed(self, record_ids: Sequence[str], *, at: dt.datetime | None = None) -> int:
        """Mark items as replayed now and count the replay; return how many the store holds."""
        now = _utc(at or dt.datetime.now(dt.UTC))
        return self._set_status(
            record_ids,
            status="replayed",
            status_changed_at=now,
            replayed_at=now,
            replay_count=QuarantineRow.replay_count + 1,
        )

    def mark_resolved(self, record_ids: Sequence[str], *, at: dt.datetime | None = None) -> int:
        """Mark items as resolved without replay; return how many the store holds."""
        return self._set_status(
            record_ids, status="resolved", status_changed_at=_utc(at or dt.datetime.now(dt.UTC))
        )

    def _set_status(self, record_ids: Sequence[str], **values: Any) -> int:
        ids = distinct(record_ids)

        def work(session: Session) -> int:
            total = 0
            for chunk in in_chunks(ids):
                result = session.execute(
                    update(QuarantineRow).where(QuarantineRow.record_id.in_(chunk)).values(**values)
                )
                total += int(getattr(result, "rowcount", 0) or 0)
            return total

        return write_transaction(self._engine, work) if ids else 0

    def counts_by(self, field: CountField) -> dict[str, int]:
        """Return the number of items per stage, rule or status, largest first."""
        if field not in ("stage", "rule", "status"):
            raise ValueError(f"cannot count by {field!r}: use stage, rule or status")
        column = getattr(QuarantineRow, field)
        query = select(column, func.count()).group_by(column).order_by(func.count().desc(), column)
        rows = read_transaction(self._engine, lambda s: s.execute(query).all())
        return {str(key): int(count) for key, count in rows}
