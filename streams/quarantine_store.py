"""The quarantine store: every ExceptionRecord, queryable, with its original bytes and replay status.

One row per record id. The record id is deterministic (the same item failing the same way gives the same
id), so a repeat of a failure counts another occurrence on the existing row instead of adding one.

An occurrence is one failure, named by its record id and the time it was recorded: a record is stamped
once, when the failure happens, so a redelivery of the same exceptions-topic record (the topic is
at-least-once) carries the same time, and a new failure of the same message (after a replay, or the same
bytes resent by the source) carries a later one. Every occurrence seen is kept in its own table, so a
redelivery is recognised however late and in whatever order it comes, and changes nothing.

A replay is stamped with the time it began, before anything is published. A failure recorded at or after
that time is a failure of the replay (or of something newer), so the item is open again whether that
failure reaches the store before or after the replay is marked; one recorded before it is not.

Both rules compare times from different clocks (the workers stamp failures, the replaying process stamps
the replay), so they assume clocks kept in step, as NTP keeps them. Two different failures of one message
stamped in the same microsecond would count as one.

SQLite in WAL mode by default, PostgreSQL by URL, both through the adapters' engine and transaction
helpers. A database made by an earlier version gets the occurrence table when it is opened (see
``_migrate``).
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import (
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    exists,
    func,
    insert,
    inspect,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from canonical.quarantine import ExceptionRecord
from foundation.runs import run_database_url
from foundation.settings import Settings
from foundation.sql import (
    UtcDateTime,
    create_schema,
    distinct,
    in_chunks,
    open_engine,
    read_transaction,
    sqlite_path,
    utc,
    write_transaction,
)

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
    """Return the store's URL (with its password): the setting, else quarantine.db in this run, else in the
    latest run."""
    return run_database_url(
        settings, settings.database_url("quarantine"), "quarantine.db", "HCSYNC_QUARANTINE_DATABASE_URL"
    )


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
    fix_hint: Mapped[str] = mapped_column(Text, default="", server_default="")
    original: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[dt.datetime]
    first_seen_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime] = mapped_column(index=True)
    occurrences: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(index=True)
    status_changed_at: Mapped[dt.datetime | None]
    # When the latest replay began (before it published): failures recorded from then on are its own.
    replayed_at: Mapped[dt.datetime | None]
    replay_count: Mapped[int] = mapped_column(Integer)


class OccurrenceRow(Base):
    """One failure of a quarantined item: its record id and the time the failure was recorded."""

    __tablename__ = "quarantine_occurrences"

    record_id: Mapped[str] = mapped_column(ForeignKey("quarantine_items.record_id"), primary_key=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(primary_key=True)
    # When this store first got it: tells a late delivery from a recent failure when reading the history.
    stored_at: Mapped[dt.datetime]


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
    fix_hint: str = ""
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
        fix_hint=row.fix_hint or "",
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


def _occurrences_of(records: Sequence[ExceptionRecord]) -> list[tuple[str, dt.datetime]]:
    """Return the occurrences (record id, recorded time in UTC) of ``records`` without repeats."""
    return list(dict.fromkeys((record.record_id, utc(record.recorded_at)) for record in records))


def _new_row(record: ExceptionRecord) -> QuarantineRow:
    at = utc(record.recorded_at)
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
        fix_hint=_text(record.fix_hint),
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


def _repeat(row: QuarantineRow, record: ExceptionRecord) -> None:
    """Count ``record``, a new failure (never a redelivery: add filters those out), on its item's ``row``."""
    at = utc(record.recorded_at)
    row.occurrences += 1
    if at < row.first_seen_at:
        row.first_seen_at = at
    if at > row.last_seen_at:
        row.last_seen_at = at
        # The latest failure's details are the ones to act on (a replay can fail differently located).
        row.recorded_at = at
        row.reason = _text(record.reason)
        row.found = _text(record.found)
        row.fix_hint = _text(record.fix_hint)
        if record.encounter_id and not row.encounter_id:
            row.encounter_id = _text(record.encounter_id)
    if _reopens(row, at):
        row.status = "open"
        row.status_changed_at = at


def _reopens(row: QuarantineRow, at: dt.datetime) -> bool:
    """Tell whether a failure recorded ``at`` means the replay or the resolution of ``row`` did not hold."""
    if row.status == "replayed":
        # From the moment the replay began: its own failure can be stamped before the replay is marked.
        return row.replayed_at is None or at >= row.replayed_at
    if row.status == "resolved":
        return row.status_changed_at is None or at > row.status_changed_at
    return False


def _migrate(engine: Engine) -> None:
    """Create what is missing; give the items of an older database the occurrences it could recognise."""
    had_occurrences = inspect(engine).has_table(OccurrenceRow.__tablename__)
    create_schema(engine, Base.metadata)  # new tables, and columns a later release added (fix_hint)
    if had_occurrences:
        return

    # A database from before the occurrence table knew each item's first and last failure times, the only
    # redeliveries it told apart; failures in between are counted but their times were never kept.
    def backfill(session: Session) -> None:
        for seen_at in (QuarantineRow.first_seen_at, QuarantineRow.last_seen_at):
            known = exists().where(
                OccurrenceRow.record_id == QuarantineRow.record_id, OccurrenceRow.recorded_at == seen_at
            )
            missing = select(QuarantineRow.record_id, seen_at, QuarantineRow.last_seen_at).where(~known)
            session.execute(
                insert(OccurrenceRow).from_select(["record_id", "recorded_at", "stored_at"], missing)
            )

    # Idempotent, so two processes opening the same old database at once both end up right.
    write_transaction(engine, backfill)


class QuarantineStore:
    """Quarantined items in a SQL database: add, query, read originals and track replay and resolution."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engine = open_engine(database_url)
        _migrate(self._engine)

    def close(self) -> None:
        """Release the store's connections."""
        self._engine.dispose()

    def add(self, records: Sequence[ExceptionRecord]) -> int:
        """Store records in one transaction; return how many were new items or new occurrences.

        A record whose occurrence (record id and recorded time) the store already holds is a redelivery
        and changes nothing.
        """
        stored_at = dt.datetime.now(dt.UTC)

        def work(session: Session) -> int:
            ids = distinct(record.record_id for record in records)
            rows: dict[str, QuarantineRow] = {}
            for chunk in in_chunks(ids):
                # Locked (on PostgreSQL; SQLite locks the database) so a concurrent replay mark or add
                # cannot interleave its read-modify-write with ours.
                query = select(QuarantineRow).where(QuarantineRow.record_id.in_(chunk)).with_for_update()
                rows.update((row.record_id, row) for row in session.scalars(query))
            seen: set[tuple[str, dt.datetime]] = set()
            # Two values per pair: keep each IN (...) as small as the adapters' chunks.
            for pairs in in_chunks(_occurrences_of(records), 250):
                known = select(OccurrenceRow.record_id, OccurrenceRow.recorded_at).where(
                    tuple_(OccurrenceRow.record_id, OccurrenceRow.recorded_at).in_(pairs)
                )
                seen.update((record_id, utc(at)) for record_id, at in session.execute(known))
            new: list[OccurrenceRow] = []
            for record in records:
                occurrence = (record.record_id, utc(record.recorded_at))
                if occurrence in seen:
                    continue
                seen.add(occurrence)
                new.append(
                    OccurrenceRow(record_id=occurrence[0], recorded_at=occurrence[1], stored_at=stored_at)
                )
                row = rows.get(record.record_id)
                if row is None:
                    rows[record.record_id] = row = _new_row(record)
                    session.add(row)
                else:
                    _repeat(row, record)
            # Items first: an occurrence refers to its item, and no relationship tells the flush the order.
            session.flush()
            session.add_all(new)
            return len(new)

        if not records:
            return 0
        # A concurrent writer inserting the same item or occurrence makes write_transaction rerun this, and
        # the rerun sees what it wrote.
        return write_transaction(self._engine, work)

    def list(
        self,
        *,
        stage: str | None = None,
        rule: str | None = None,
        status: Status | None = None,
        encounter_id: str | None = None,
        message_id: str | None = None,
        sender: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = 100,
    ) -> builtins.list[QuarantineItem]:
        """Return matching items, most recently seen first; ``limit=None`` returns them all.

        ``sender`` is the sending application and facility (MSH-3^MSH-4) of the message key, which only
        items of messages that were read that far carry. ``since`` and ``until`` bound the last time an
        item was seen: at or after ``since``, before ``until``.
        """
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
        if sender is not None:
            # The message key is sender|control id; the sender itself may hold LIKE's wildcards.
            prefix = sender.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(QuarantineRow.message_key.like(f"{prefix}|%", escape="\\"))
        if since is not None:
            query = query.where(QuarantineRow.last_seen_at >= utc(since))
        if until is not None:
            query = query.where(QuarantineRow.last_seen_at < utc(until))
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

    def occurrences(self, record_id: str) -> builtins.list[dt.datetime]:
        """Return the times an item failed, oldest first (an item from an older store may miss some)."""
        query = (
            select(OccurrenceRow.recorded_at)
            .where(OccurrenceRow.record_id == record_id)
            .order_by(OccurrenceRow.recorded_at)
        )
        return read_transaction(self._engine, lambda s: [utc(at) for at in s.scalars(query)])

    def mark_replayed(self, record_ids: Sequence[str], *, at: dt.datetime | None = None) -> int:
        """Count a replay that began ``at`` (default now); return how many items the store holds.

        ``at`` must be taken before the first record is published. An item is then "replayed", unless a
        failure recorded at or after ``at`` has already arrived: the replay failed again (or something
        newer did), and the item stays or becomes open. A failure arriving later reopens it in ``add``.
        """
        started = utc(at or dt.datetime.now(dt.UTC))
        marked_at = max(started, dt.datetime.now(dt.UTC))
        ids = distinct(record_ids)

        def work(session: Session) -> int:
            total = 0
            for chunk in in_chunks(ids):
                query = select(QuarantineRow).where(QuarantineRow.record_id.in_(chunk)).with_for_update()
                for row in session.scalars(query):
                    total += 1
                    row.replay_count += 1
                    # Two replays marked out of order: the later one is the one failures are judged by.
                    if row.replayed_at is None or started > row.replayed_at:
                        row.replayed_at = started
                    status = "open" if row.last_seen_at >= row.replayed_at else "replayed"
                    if row.status != status:
                        row.status = status
                        row.status_changed_at = marked_at
            return total

        return write_transaction(self._engine, work) if ids else 0

    def mark_resolved(self, record_ids: Sequence[str], *, at: dt.datetime | None = None) -> int:
        """Mark items as resolved without replay; return how many the store holds."""
        now = utc(at or dt.datetime.now(dt.UTC))
        ids = distinct(record_ids)

        def work(session: Session) -> int:
            total = 0
            for chunk in in_chunks(ids):
                result = session.execute(
                    update(QuarantineRow)
                    .where(QuarantineRow.record_id.in_(chunk))
                    .values(status="resolved", status_changed_at=now)
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
