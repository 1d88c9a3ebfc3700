"""The message store: every inbound message, durable before it is acknowledged.

One row per distinct message received, whatever the standard (HL7 v2 now; X12 and FHIR land here too):
its bytes, sender, control id (MSH-10, ISA13/ST02, a FHIR id), message type, the time and channel it came
by, the ACK it was answered with, whether it has been forwarded to the broker, and what the pipeline made
of it (mapped, with its event ids; routed; quarantined, with the exception id).

Identity. A message is named by its standard, sender and control id; ``message_id`` is a digest of those
and of the content's digest (:mod:`adapters.inbound.hl7v2` normalises what a resend may change, such as
MSH-7). So:

- the same message again (a resend after a lost ACK) is a **duplicate**: nothing is written and the
  sender gets the ACK stored the first time;
- the same sender and control id with **different** content is a **conflict**: it is stored too, marked
  with the message it conflicts with, never processed; the forwarder quarantines it (rule
  ``HL7-MSH-10-CONFLICT``) so it shows in ``hcsync exceptions``.

Forwarding. The store keeps a forwarding *epoch*. A message is pending until it is marked forwarded in the
current epoch. When the broker loses what it held (the embedded broker keeps everything in memory), the
stack starts a new epoch and every stored message becomes pending again: the forwarder replays the store
into the new broker and the idempotent sinks keep the postings as they were. A forwarder that marks a batch
it sent to the old broker marks it in the old epoch, so a restart in between never hides a message.

SQLite in WAL mode with ``synchronous=FULL`` (a commit is on disk before it returns) by default,
PostgreSQL by URL. One transaction stores a whole batch: the gateways' group commit.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from foundation.runs import run_database_url
from foundation.settings import Settings
from foundation.sql import UtcDateTime, create_schema, in_chunks, open_engine, reading, utc

__all__ = [
    "FORWARD_STATES",
    "OUTCOMES",
    "AckFor",
    "EnvelopeEntry",
    "InboundMessage",
    "MessageFilter",
    "MessageInfo",
    "MessageStore",
    "Pending",
    "Receipt",
    "Verdict",
    "default_message_store_url",
    "no_ack",
]

OUTCOMES = ("mapped", "routed", "quarantined")
# What `hcsync messages list --state` filters on: awaiting the forwarder, on the broker, or a conflict.
FORWARD_STATES = ("pending", "forwarded", "conflict")


def default_message_store_url(settings: Settings) -> str:
    """Return the store's URL (with its password): the setting, else messages.db in this run, else in the
    latest run."""
    return run_database_url(
        settings, settings.database_url("message_store"), "messages.db", "HCSYNC_MESSAGE_STORE_URL"
    )


class Verdict(StrEnum):
    """What the store made of a message handed to it."""

    NEW = "new"  # first receipt of this sender and control id: stored, to be forwarded
    DUPLICATE = "duplicate"  # the same content again: nothing written, the first ACK answers it
    CONFLICT = "conflict"  # same sender and control id, different content: stored, never processed


@dataclass(frozen=True, slots=True)
class EnvelopeEntry:
    """One transaction set of a stored X12 interchange: what finds the interchange again."""

    group_control: str  # GS06
    functional_id: str  # GS01
    set_control: str  # ST02
    set_code: str  # ST01: 837, 835, 270...
    guide: str  # ST03, else GS08: 005010X222A1...


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as a gateway received it, with what the store indexes it by."""

    standard: str  # hl7v2, x12, fhir
    sender: str  # HL7: MSH-3^MSH-4; X12: ISA06; FHIR: the client
    control_id: str  # HL7: MSH-10
    message_type: str  # HL7: MSH-9 as ADT^A01
    content: bytes  # the bytes as received (PHI)
    digest: str  # of the content, normalised for what a resend may change
    broker_key: bytes  # the key of its raw-topic record
    channel: str  # how it came: "mllp 10.1.2.3:51234", "file", ...
    received_at: dt.datetime
    visit_number: str = ""  # HL7: PV1-19.1 (PHI)
    patient_id: str = ""  # HL7: PID-3.1 (PHI)
    # X12: one entry per transaction set, searchable (`hcsync messages list --gs06/--st02`).
    envelope: tuple[EnvelopeEntry, ...] = ()

    @property
    def message_id(self) -> str:
        """Return the store's id of this message: one per standard, sender, control id and content."""
        seed = "\x1f".join((self.standard, self.sender, self.control_id, self.digest))
        return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Receipt:
    """The store's answer for one message: its id, the verdict and the ACK to send."""

    message_id: str
    verdict: Verdict
    ack: bytes | None  # None: answer nothing (the sender's MSH-15 asked for no answer)
    # For a conflict: the message first stored under the same sender and control id.
    first_message_id: str | None = None
    first_received_at: dt.datetime | None = None


# Builds the ACK of a message the store is about to write (NEW or CONFLICT; the first message's receipt for a
# conflict) or of a duplicate whose first copy has none stored (it came from a file).
AckFor = Callable[[Verdict, "Receipt | None"], bytes | None]


def no_ack(_verdict: Verdict, _first: Receipt | None) -> None:
    """The AckFor of what arrives without an ACK to send back (a file, a payer's answer on a call)."""
    return None


@dataclass(frozen=True, slots=True)
class Pending:
    """A stored message the forwarder has yet to send in the current epoch."""

    message_id: str
    standard: str
    sender: str
    control_id: str
    message_type: str
    broker_key: bytes
    content: bytes
    received_at: dt.datetime
    conflict_of: str | None


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """What the store tells about one message, without its bytes."""

    message_id: str
    seq: int
    standard: str
    sender: str
    control_id: str
    message_type: str
    size_bytes: int
    channel: str
    received_at: dt.datetime
    visit_number: str
    patient_id: str
    ack: bytes | None
    conflict_of: str | None
    state: str  # pending, forwarded or conflict
    forwarded_at: dt.datetime | None
    outcome: str | None
    outcome_at: dt.datetime | None
    outcome_rule: str
    event_ids: tuple[str, ...]
    exception_id: str | None
    replay_count: int
    outcome_note: str = ""


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """Which messages a list, replay or count takes; every field set must match."""

    control_id: str | None = None
    sender: str | None = None
    message_type: str | None = None  # exact (ADT^A01), or a prefix ending in ^ or * (ADT^, ADT*)
    visit_number: str | None = None
    patient_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    state: str | None = None  # pending, forwarded, conflict
    outcome: str | None = None  # mapped, routed, quarantined, or "none" for not yet known
    standard: str | None = None
    group_control: str | None = None  # X12 GS06 of one of the interchange's groups
    set_control: str | None = None  # X12 ST02 of one of its transaction sets


class Base(DeclarativeBase):
    """Declarative base of the message store."""

    type_annotation_map = {dt.datetime: UtcDateTime(), str: String()}


class MessageRow(Base):
    """One inbound message."""

    __tablename__ = "inbound_messages"

    # Receipt order. SQLite only autoincrements an INTEGER primary key.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(24), unique=True)
    standard: Mapped[str]
    sender: Mapped[str]
    control_id: Mapped[str]
    message_type: Mapped[str] = mapped_column(index=True)
    broker_key: Mapped[bytes] = mapped_column(LargeBinary)
    digest: Mapped[str]
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str]
    received_at: Mapped[dt.datetime] = mapped_column(index=True)
    visit_number: Mapped[str] = mapped_column(index=True)
    patient_id: Mapped[str] = mapped_column(index=True)
    ack: Mapped[bytes | None] = mapped_column(LargeBinary)
    conflict_of: Mapped[str | None] = mapped_column(index=True)
    forwarded_epoch: Mapped[int] = mapped_column(Integer, default=0)  # the epoch it was last forwarded in
    # Not yet forwarded in the current epoch. A flag, not a comparison with the epoch, so that a partial
    # index holds only the pending rows and the forwarder's poll costs the same with 10 or 10 million
    # messages stored (a rowid scan past every forwarded row grew with the store).
    pending: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    forwarded_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None]
    outcome_at: Mapped[dt.datetime | None]
    outcome_rule: Mapped[str] = mapped_column(default="", server_default="")
    # What else the pipeline said of it: an X12 interchange's acknowledgments (999/TA1 verdicts and
    # their outbox files), or why a set was not handled. Never PHI.
    outcome_note: Mapped[str] = mapped_column(Text, default="", server_default="")
    event_ids: Mapped[str] = mapped_column(Text, default="", server_default="")
    exception_id: Mapped[str | None]
    replay_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        # One first receipt per sender and control id; conflicts are the rows that point at it.
        Index(
            "uq_inbound_first",
            "standard",
            "sender",
            "control_id",
            unique=True,
            sqlite_where=conflict_of.is_(None),
            postgresql_where=conflict_of.is_(None),
        ),
        Index(
            "ix_inbound_unforwarded",
            "seq",
            sqlite_where=pending.is_(True),
            postgresql_where=pending.is_(True),
        ),
        Index("ix_inbound_key", "standard", "broker_key"),
    )


class EnvelopeRow(Base):
    """One transaction set of a stored X12 interchange (GS06, ST02 searchable); the message is its row."""

    __tablename__ = "inbound_x12_sets"

    message_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # the set's order in the interchange
    group_control: Mapped[str] = mapped_column(index=True)
    functional_id: Mapped[str]
    set_control: Mapped[str] = mapped_column(index=True)
    set_code: Mapped[str]
    guide: Mapped[str]


class StoreStateRow(Base):
    """The store's one-row state: the forwarding epoch."""

    __tablename__ = "inbound_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    forward_epoch: Mapped[int] = mapped_column(Integer)
    epoch_started_at: Mapped[dt.datetime]
    epoch_reason: Mapped[str] = mapped_column(Text)


_M = cast(Table, MessageRow.__table__)
_E = cast(Table, EnvelopeRow.__table__)
_S = cast(Table, StoreStateRow.__table__)
_INFO_COLUMNS = [c for c in _M.c if c.name != "content"]
_PENDING = _M.c.pending.is_(True)  # the partial index's condition, word for word, so the planner uses it


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MessageStore:
    """The message store in a SQL database (SQLite file or PostgreSQL)."""

    def __init__(self, database_url: str, *, busy_timeout_s: float = 30.0) -> None:
        self.database_url = database_url
        self._engine = open_engine(database_url, durable=True, busy_timeout_s=busy_timeout_s)
        create_schema(self._engine, Base.metadata)
        with reading(self._engine) as conn:
            initialised = conn.execute(select(func.count()).select_from(_S)).scalar_one() > 0
        if initialised:  # opening a store writes nothing: readers do not wait for the write lock
            return
        with self._engine.begin() as conn:
            if conn.execute(select(func.count()).select_from(_S)).scalar_one() == 0:
                conn.execute(
                    insert(_S).values(
                        id=1, forward_epoch=1, epoch_started_at=_now(), epoch_reason="store created"
                    )
                )

    @classmethod
    def from_settings(cls, settings: Settings) -> MessageStore:
        """Open the store the settings name (the run's messages.db by default)."""
        return cls(default_message_store_url(settings), busy_timeout_s=settings.message_store_timeout_s)

    def close(self) -> None:
        """Release the store's connections."""
        self._engine.dispose()

    # -- receiving ----------------------------------------------------------------------------------

    def store(self, items: Sequence[tuple[InboundMessage, AckFor]]) -> list[Receipt]:
        """Make every message durable in one transaction; return one receipt per item, in order."""
        if not items:
            return []
        with self._engine.begin() as conn:
            by_id = self._rows_by(conn, "message_id", [m.message_id for m, _ in items])
            firsts = self._first_rows(conn, [(m.standard, m.sender, m.control_id) for m, _ in items])
            receipts: list[Receipt] = []
            rows: list[dict[str, Any]] = []
            for message, ack_for in items:
                known = by_id.get(message.message_id)
                if known is not None:
                    ack = known["ack"]
                    if ack is None:
                        ack = ack_for(Verdict.DUPLICATE, None)
                    receipts.append(
                        Receipt(message.message_id, Verdict.DUPLICATE, ack, known["conflict_of"] or None)
                    )
                    continue
                first = firsts.get((message.standard, message.sender, message.control_id))
                if first is None:
                    verdict, first_receipt = Verdict.NEW, None
                else:
                    verdict = Verdict.CONFLICT
                    first_receipt = Receipt(
                        first["message_id"], Verdict.NEW, first["ack"], None, first["received_at"]
                    )
                ack = ack_for(verdict, first_receipt)
                row = _new_row(message, ack, None if first is None else first["message_id"])
                rows.append(row)
                by_id[message.message_id] = row
                if first is None:
                    firsts[(message.standard, message.sender, message.control_id)] = row
                receipts.append(
                    Receipt(
                        message.message_id,
                        verdict,
                        ack,
                        None if first_receipt is None else first_receipt.message_id,
                        None if first_receipt is None else first_receipt.first_received_at,
                    )
                )
            if rows:
                conn.execute(insert(_M), rows)
                # The envelope of each message written now (a duplicate in the same call is written once).
                written = {row["message_id"] for row in rows}
                envelopes = {
                    m.message_id: m.envelope for m, _ in items if m.envelope and m.message_id in written
                }
                sets = [
                    {"message_id": message_id, "position": n} | asdict(entry)
                    for message_id, envelope in envelopes.items()
                    for n, entry in enumerate(envelope)
                ]
                if sets:
                    conn.execute(insert(_E), sets)
        return receipts

    @staticmethod
    def _rows_by(conn: Connection, column: str, values: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for chunk in in_chunks(list(dict.fromkeys(values))):
            query = select(_M.c.message_id, _M.c.ack, _M.c.conflict_of).where(_M.c[column].in_(chunk))
            found.update((row.message_id, row._mapping) for row in conn.execute(query))
        return found

    @staticmethod
    def _first_rows(
        conn: Connection, names: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], RowMapping | dict[str, Any]]:
        found: dict[tuple[str, str, str], RowMapping | dict[str, Any]] = {}
        columns = (_M.c.standard, _M.c.sender, _M.c.control_id)
        # One equality term per name, each with the unique index's condition: SQLite then searches that
        # index once per name. A row-value IN (...) made it pick the conflict_of index, where every first
        # receipt sits under NULL, and scan the whole store for every transaction.
        for chunk in in_chunks(list(dict.fromkeys(names)), 150):
            query = select(*columns, _M.c.message_id, _M.c.ack, _M.c.received_at).where(
                or_(
                    *(
                        and_(
                            _M.c.standard == standard,
                            _M.c.sender == sender,
                            _M.c.control_id == control_id,
                            _M.c.conflict_of.is_(None),
                        )
                        for standard, sender, control_id in chunk
                    )
                )
            )
            for row in conn.execute(query):
                found[(row.standard, row.sender, row.control_id)] = row._mapping
        return found

    # -- forwarding ---------------------------------------------------------------------------------

    def epoch(self) -> int:
        """Return the current forwarding epoch."""
        with reading(self._engine) as conn:
            return self.epoch_of(conn)

    @staticmethod
    def epoch_of(conn: Connection, *, lock: bool = False) -> int:
        """Return the forwarding epoch as ``conn`` sees it; ``lock`` holds it until the transaction ends."""
        query = select(_S.c.forward_epoch).where(_S.c.id == 1)
        return int(conn.execute(query.with_for_update() if lock else query).scalar_one())

    def new_epoch(self, reason: str) -> int:
        """Start a new forwarding epoch, making every stored message pending again; return it."""
        with self._engine.begin() as conn:
            conn.execute(
                update(_S)
                .where(_S.c.id == 1)
                .values(forward_epoch=_S.c.forward_epoch + 1, epoch_started_at=_now(), epoch_reason=reason)
            )
            conn.execute(update(_M).where(_M.c.pending.is_not(True)).values(pending=True))
            return self.epoch_of(conn)

    def pending(self, epoch: int, limit: int) -> list[Pending]:
        """Return up to ``limit`` messages not yet forwarded in ``epoch``, in receipt order."""
        query = (
            select(
                _M.c.message_id,
                _M.c.standard,
                _M.c.sender,
                _M.c.control_id,
                _M.c.message_type,
                _M.c.broker_key,
                _M.c.content,
                _M.c.received_at,
                _M.c.conflict_of,
            )
            .where(_PENDING)
            .order_by(_M.c.seq)
            .limit(limit)
        )
        with reading(self._engine) as conn:
            if self.epoch_of(conn) != epoch:
                return []  # a new epoch started: the caller must take it up first
            return [Pending(**row._mapping) for row in conn.execute(query)]

    def mark_forwarded(self, message_ids: Sequence[str], epoch: int) -> int:
        """Record that the broker acknowledged these messages in ``epoch``; return how many changed."""
        if not message_ids:
            return 0
        now = _now()
        changed = 0
        with self._engine.begin() as conn:
            # Locked (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers anyway): a new epoch cannot
            # start between the check and the update, and after one the sends of the old epoch count for
            # nothing, since the broker that acknowledged them is gone.
            if self.epoch_of(conn, lock=True) != epoch:
                return 0
            for chunk in in_chunks(list(message_ids)):
                result = conn.execute(
                    update(_M)
                    .where(_M.c.message_id.in_(chunk))
                    .where(_PENDING)
                    .values(pending=False, forwarded_epoch=epoch, forwarded_at=now)
                )
                changed += result.rowcount or 0
        return changed

    def mark_for_replay(self, message_ids: Sequence[str]) -> int:
        """Make these messages pending again, so the forwarder sends them once more; return how many."""
        changed = 0
        with self._engine.begin() as conn:
            for chunk in in_chunks(list(dict.fromkeys(message_ids))):
                result = conn.execute(
                    update(_M)
                    .where(_M.c.message_id.in_(chunk))
                    .values(pending=True, forwarded_epoch=0, replay_count=_M.c.replay_count + 1)
                )
                changed += result.rowcount or 0
        return changed

    # -- outcomes -----------------------------------------------------------------------------------

    def record_outcomes(self, outcomes: Sequence[OutcomeUpdate]) -> int:
        """Record what the pipeline made of messages; the newest outcome of a message wins.

        An outcome names its message by id (the forwarder's record header) or, for a record that came
        another way (a quarantine replay), by standard and broker key: then it is the first receipt's.
        """
        by_id = [outcome for outcome in outcomes if outcome.message_id]
        by_key = [outcome for outcome in outcomes if not outcome.message_id]
        changed = 0
        with self._engine.begin() as conn:
            if by_id:
                # One statement for the whole batch (executemany): the forwarder records a transform
                # batch's outcomes at once, and compiling and running a statement per message cost more
                # than the update itself.
                result = conn.execute(
                    _OUTCOME_BY_ID, [{"v_mid": o.message_id, **_outcome_values(o)} for o in by_id]
                )
                changed += result.rowcount or 0
            for outcome in by_key:
                result = conn.execute(
                    _OUTCOME_BY_KEY,
                    {"v_std": outcome.standard, "v_key": outcome.broker_key, **_outcome_values(outcome)},
                )
                changed += result.rowcount or 0
        return changed

    # -- reading ------------------------------------------------------------------------------------

    def list(self, where: MessageFilter = MessageFilter(), *, limit: int | None = 100) -> list[MessageInfo]:
        """Return the messages that match, newest first."""
        query = _filtered(select(*_INFO_COLUMNS), where).order_by(_M.c.seq.desc())
        if limit is not None:
            query = query.limit(limit)
        with reading(self._engine) as conn:
            return [_info(row._mapping) for row in conn.execute(query)]

    def count(self, where: MessageFilter = MessageFilter()) -> int:
        """Return how many messages match."""
        query = _filtered(select(func.count()).select_from(_M), where)
        with reading(self._engine) as conn:
            return int(conn.execute(query).scalar_one())

    def ids(self, where: MessageFilter) -> builtins.list[str]:
        """Return the ids of the messages that match, in receipt order."""
        query = _filtered(select(_M.c.message_id), where).order_by(_M.c.seq)
        with reading(self._engine) as conn:
            return [str(value) for value in conn.execute(query).scalars()]

    def get(self, message_id: str) -> MessageInfo | None:
        """Return one message by id (or by a unique prefix of at least 6 characters), or None."""
        with reading(self._engine) as conn:
            rows = conn.execute(select(*_INFO_COLUMNS).where(_M.c.message_id == message_id)).all()
            if not rows and len(message_id) >= 6:
                prefixed = select(*_INFO_COLUMNS).where(
                    _M.c.message_id.startswith(message_id, autoescape=True)
                )
                rows = conn.execute(prefixed.limit(2)).all()
        return _info(rows[0]._mapping) if len(rows) == 1 else None

    def content(self, message_id: str) -> bytes:
        """Return a message's bytes as received (KeyError when there is no such message)."""
        with reading(self._engine) as conn:
            value = conn.execute(select(_M.c.content).where(_M.c.message_id == message_id)).scalar()
        if value is None:
            raise KeyError(message_id)
        return bytes(value)

    def totals(self) -> dict[str, int]:
        """Return counts the status and report show: messages, pending, conflicts, and by outcome."""
        with reading(self._engine) as conn:
            total = conn.execute(select(func.count()).select_from(_M)).scalar_one()
            pending = conn.execute(select(func.count()).select_from(_M).where(_PENDING)).scalar_one()
            conflicts = conn.execute(
                select(func.count()).select_from(_M).where(_M.c.conflict_of.is_not(None))
            ).scalar_one()
            by_outcome = conn.execute(select(_M.c.outcome, func.count()).group_by(_M.c.outcome)).all()
        out = {"messages": int(total), "pending": int(pending), "conflicts": int(conflicts)}
        for outcome, count in by_outcome:
            out[outcome or "outcome_unknown"] = int(count)
        return out

    # -- retention ----------------------------------------------------------------------------------

    def purge(self, before: dt.datetime) -> int:
        """Delete forwarded messages received before ``before``; return how many. Pending ones stay."""
        with self._engine.begin() as conn:
            gone = (
                select(_M.c.message_id).where(_M.c.received_at < utc(before)).where(_M.c.pending.is_not(True))
            )
            conn.execute(delete(_E).where(_E.c.message_id.in_(gone)))
            result = conn.execute(
                delete(_M).where(_M.c.received_at < utc(before)).where(_M.c.pending.is_not(True))
            )
        return result.rowcount or 0


def _outcome_values(outcome: OutcomeUpdate) -> dict[str, Any]:
    return {
        "v_outcome": outcome.outcome,
        "v_at": utc(outcome.at),
        "v_rule": outcome.rule,
        "v_event_ids": " ".join(outcome.event_ids),
        "v_exception_id": outcome.exception_id,
        "v_note": outcome.note,
    }


def _outcome_update(target: ColumnElement[bool]) -> Update:
    """An outcome update of the message(s) ``target`` names; the newest outcome of a message wins."""
    at = bindparam("v_at", type_=_M.c.outcome_at.type)
    return (
        update(_M)
        .where(target)
        .where(or_(_M.c.outcome_at.is_(None), _M.c.outcome_at <= at))
        .values(
            outcome=bindparam("v_outcome"),
            outcome_at=at,
            outcome_rule=bindparam("v_rule"),
            event_ids=bindparam("v_event_ids"),
            exception_id=bindparam("v_exception_id"),
            outcome_note=bindparam("v_note"),
        )
    )


_OUTCOME_BY_ID = _outcome_update(_M.c.message_id == bindparam("v_mid"))
# A record that came another way (a quarantine replay) names the first receipt by standard and key.
_OUTCOME_BY_KEY = _outcome_update(
    (_M.c.standard == bindparam("v_std"))
    & (_M.c.broker_key == bindparam("v_key"))
    & _M.c.conflict_of.is_(None)
)


@dataclass(frozen=True, slots=True)
class OutcomeUpdate:
    """What the pipeline made of one message, as the store records it."""

    message_id: str  # empty when the record did not come through the forwarder
    standard: str
    broker_key: bytes
    outcome: str  # mapped, routed, quarantined
    at: dt.datetime
    event_ids: tuple[str, ...] = ()
    exception_id: str | None = None
    rule: str = ""
    note: str = ""


def _new_row(message: InboundMessage, ack: bytes | None, conflict_of: str | None) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "standard": message.standard,
        "sender": message.sender,
        "control_id": message.control_id,
        "message_type": message.message_type,
        "broker_key": message.broker_key,
        "digest": message.digest,
        "content": message.content,
        "size_bytes": len(message.content),
        "channel": message.channel,
        "received_at": utc(message.received_at),
        "visit_number": message.visit_number,
        "patient_id": message.patient_id,
        "ack": ack,
        "conflict_of": conflict_of,
        "forwarded_epoch": 0,
        "pending": True,
        "forwarded_at": None,
        "outcome": None,
        "outcome_at": None,
        "outcome_rule": "",
        "event_ids": "",
        "exception_id": None,
        "replay_count": 0,
    }


def _state(row: RowMapping) -> str:
    if row["conflict_of"] is not None:
        return "conflict"
    return "pending" if row["pending"] else "forwarded"


def _info(row: RowMapping) -> MessageInfo:
    return MessageInfo(
        message_id=row["message_id"],
        seq=int(row["seq"]),
        standard=row["standard"],
        sender=row["sender"],
        control_id=row["control_id"],
        message_type=row["message_type"],
        size_bytes=int(row["size_bytes"]),
        channel=row["channel"],
        received_at=row["received_at"],
        visit_number=row["visit_number"],
        patient_id=row["patient_id"],
        ack=None if row["ack"] is None else bytes(row["ack"]),
        conflict_of=row["conflict_of"],
        state=_state(row),
        forwarded_at=row["forwarded_at"],
        outcome=row["outcome"],
        outcome_at=row["outcome_at"],
        outcome_rule=row["outcome_rule"] or "",
        event_ids=tuple(row["event_ids"].split()) if row["event_ids"] else (),
        exception_id=row["exception_id"],
        replay_count=int(row["replay_count"]),
        outcome_note=row["outcome_note"] or "",
    )


def _filtered(query: Any, where: MessageFilter) -> Any:
    """Apply a filter to a select over the messages table."""
    if where.control_id is not None:
        query = query.where(_M.c.control_id == where.control_id)
    if where.sender is not None:
        query = query.where(_M.c.sender == where.sender)
    if where.standard is not None:
        query = query.where(_M.c.standard == where.standard)
    if where.group_control is not None:
        groups = select(_E.c.message_id).where(_E.c.group_control == where.group_control)
        query = query.where(_M.c.message_id.in_(groups))
    if where.set_control is not None:
        sets = select(_E.c.message_id).where(_E.c.set_control == where.set_control)
        query = query.where(_M.c.message_id.in_(sets))
    if where.message_type is not None:
        kind = where.message_type
        if kind.endswith(("^", "*")):
            query = query.where(_M.c.message_type.startswith(kind.rstrip("*"), autoescape=True))
        else:
            query = query.where(_M.c.message_type == kind)
    if where.visit_number is not None:
        query = query.where(_M.c.visit_number == where.visit_number)
    if where.patient_id is not None:
        query = query.where(_M.c.patient_id == where.patient_id)
    if where.since is not None:
        query = query.where(_M.c.received_at >= utc(where.since))
    if where.until is not None:
        query = query.where(_M.c.received_at < utc(where.until))
    if where.state is not None:
        if where.state not in FORWARD_STATES:
            raise ValueError(f"unknown state {where.state!r}: use {', '.join(FORWARD_STATES)}")
        if where.state == "conflict":
            query = query.where(_M.c.conflict_of.is_not(None))
        elif where.state == "pending":
            query = query.where(_M.c.conflict_of.is_(None)).where(_PENDING)
        else:
            query = query.where(_M.c.conflict_of.is_(None)).where(_M.c.pending.is_not(True))
    if where.outcome is not None:
        if where.outcome == "none":
            query = query.where(_M.c.outcome.is_(None))
        elif where.outcome in OUTCOMES:
            query = query.where(_M.c.outcome == where.outcome)
        else:
            raise ValueError(f"unknown outcome {where.outcome!r}: use {', '.join(OUTCOMES)} or none")
    return query
