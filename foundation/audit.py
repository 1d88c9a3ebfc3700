"""The PHI access audit: who read which PHI, when, why, and what came of it; append-only, hash-chained.

Every command or API that shows PHI appends one record here *before* it shows anything, and shows nothing
when the record cannot be written. A record holds no PHI: who (an OS user for the command line, a token
subject for an API), when (UTC), what (the command and the ids of the objects read), why (the reason the
reader gave) and the outcome.

The store only grows. This module offers append and read, nothing else; the database refuses UPDATE and
DELETE by triggers (SQLite and PostgreSQL); and each record carries the SHA-256 of its content chained to
the previous record's hash, so a record edited, removed or inserted behind the triggers' back breaks the
chain that :meth:`AuditLog.verify` walks. A whole chain rewritten from the first record on is only caught
against a head hash kept elsewhere (``hcsync audit list --verify`` prints it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Engine, Integer, String, Text, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from canonical.errors import ConfigurationError, HcsyncError
from foundation.settings import Settings
from foundation.sql import (
    UtcDateTime,
    create_schema,
    open_engine,
    read_transaction,
    reading,
    write_transaction,
)

__all__ = [
    "GENESIS_HASH",
    "AuditLog",
    "AuditRecord",
    "AuditStoreError",
    "ChainBreak",
    "default_audit_url",
]

# The previous hash of the first record: no record hashes to it.
GENESIS_HASH = "0" * 64
TABLE = "phi_access_audit"
# Longest text kept per field: a reason is a sentence, not a document (and must not become a PHI dump).
_MAX_TEXT = 500
_MAX_OBJECTS = 10_000


class AuditStoreError(HcsyncError):
    """The audit store cannot be opened, written or read; the PHI it would have recorded is not shown."""


class _Base(DeclarativeBase):
    pass


class _Row(_Base):
    __tablename__ = TABLE

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    who: Mapped[str] = mapped_column(String, index=True)
    what: Mapped[str] = mapped_column(String, index=True)
    objects: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String)
    # Unique: two appenders that read the same head cannot both link to it; the loser reruns.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One access to PHI, as stored."""

    seq: int
    at: dt.datetime
    who: str
    what: str
    objects: tuple[str, ...]
    reason: str
    outcome: str
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "who": self.who,
            "what": self.what,
            "objects": list(self.objects),
            "reason": self.reason,
            "outcome": self.outcome,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where the hash chain does not hold, and how."""

    seq: int
    problem: str


def record_hash(
    prev_hash: str,
    seq: int,
    at: dt.datetime,
    who: str,
    what: str,
    objects: Sequence[str],
    reason: str,
    outcome: str,
) -> str:
    """Return the SHA-256 of a record's content and its predecessor's hash (canonical JSON)."""
    content = [prev_hash, seq, at.astimezone(dt.UTC).isoformat(), who, what, list(objects), reason, outcome]
    return hashlib.sha256(json.dumps(content, separators=(",", ":")).encode("utf-8")).hexdigest()


def default_audit_url(settings: Settings) -> str:
    """Return the audit store's URL: the setting (with its password), else SQLite audit.db in home_dir.

    Outside the embedded stack the setting is required: a home directory in a container or on one
    operator's laptop is not where a hospital's audit trail may live.
    """
    configured = settings.database_url("audit")
    if configured:
        return configured
    external = settings.external_settings()
    if external:
        raise ConfigurationError(
            f"HCSYNC_AUDIT_DATABASE_URL must name the shared audit store when {', '.join(external)} "
            "point(s) outside this host; PHI is not shown without it"
        )
    return f"sqlite:///{(settings.home_dir / 'audit.db').resolve()}"


def _append_only_ddl(dialect: str) -> list[str]:
    """Return the statements that make the database itself refuse UPDATE and DELETE on the audit table."""
    message = f"{TABLE} is append-only"
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            for verb in ("UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        return [
            f"CREATE OR REPLACE FUNCTION {TABLE}_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$",
            f"CREATE OR REPLACE TRIGGER {TABLE}_no_change BEFORE UPDATE OR DELETE ON {TABLE} "
            f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_refuse()",
            f"CREATE OR REPLACE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_refuse()",
        ]
    raise ConfigurationError(
        f"HCSYNC_AUDIT_DATABASE_URL: the audit store must be SQLite or PostgreSQL (append-only triggers), "
        f"got {dialect}"
    )


# How many of the append-only triggers exist, per dialect; _append_only_ddl makes two on either.
_TRIGGERS = 2
_TRIGGER_COUNT = {
    "sqlite": f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{TABLE}'",
    "postgresql": (
        f"SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('{TABLE}') AND NOT tgisinternal"
    ),
}


def _clip(value: str) -> str:
    return value if len(value) <= _MAX_TEXT else value[: _MAX_TEXT - 1] + "…"


class AuditLog:
    """The audit store: append a record, list records, verify the chain. Nothing else, on purpose."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.location = url.render_as_string(hide_password=True)
        try:
            ddl = _append_only_ddl(url.get_backend_name())
            # durable: a record acknowledged before PHI is shown must survive a power cut.
            self._engine: Engine = open_engine(database_url, durable=True)
            create_schema(self._engine, _Base.metadata)
            # Checked first: once the owner created them, a user with INSERT and SELECT only may open it.
            with reading(self._engine) as connection:
                present = connection.execute(text(_TRIGGER_COUNT[url.get_backend_name()])).scalar_one()
            if present < _TRIGGERS:
                with self._engine.begin() as connection:
                    for statement in ddl:
                        connection.exec_driver_sql(statement)
        except (SQLAlchemyError, OSError) as exc:
            raise self._failed("opened", exc) from exc

    def _failed(self, verb: str, exc: BaseException) -> AuditStoreError:
        return AuditStoreError(
            f"audit store {self.location} (HCSYNC_AUDIT_DATABASE_URL) cannot be {verb}: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        return cls(default_audit_url(settings))

    def close(self) -> None:
        self._engine.dispose()

    def append(
        self,
        *,
        who: str,
        what: str,
        objects: Sequence[str],
        outcome: str,
        reason: str = "",
        at: dt.datetime | None = None,
    ) -> AuditRecord:
        """Append one record, chained to the last one, and return it once committed (durably).

        ``objects`` are the ids of what was read (record ids, message ids, references), never PHI.
        """
        if not who or not what or not outcome:
            raise ValueError("an audit record needs who, what and an outcome")
        when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        fields = (_clip(who), _clip(what), tuple(objects)[:_MAX_OBJECTS], _clip(reason), _clip(outcome))

        def work(session: Session) -> AuditRecord:
            head = session.execute(select(_Row.seq, _Row.hash).order_by(_Row.seq.desc()).limit(1)).first()
            seq, prev = (1, GENESIS_HASH) if head is None else (head.seq + 1, head.hash)
            who_, what_, objects_, reason_, outcome_ = fields
            digest = record_hash(prev, seq, when, who_, what_, objects_, reason_, outcome_)
            session.add(
                _Row(
                    seq=seq,
                    at=when,
                    who=who_,
                    what=what_,
                    objects=list(objects_),
                    reason=reason_,
                    outcome=outcome_,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            return AuditRecord(seq, when, who_, what_, objects_, reason_, outcome_, prev, digest)

        try:
            return write_transaction(self._engine, work)
        except SQLAlchemyError as exc:
            raise self._failed("written", exc) from exc

    def records(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        who: str | None = None,
        what: str | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Return records in order of appending; ``what`` matches a command's start (``messages``)."""
        query = select(_Row).order_by(_Row.seq)
        if since is not None:
            query = query.where(_Row.at >= since)
        if until is not None:
            query = query.where(_Row.at < until)
        if who is not None:
            query = query.where(_Row.who == who)
        if what is not None:
            query = query.where((_Row.what == what) | _Row.what.startswith(f"{what} ", autoescape=True))
        if limit is not None:
            # The most recent ``limit``, still shown oldest first.
            query = query.order_by(None).order_by(_Row.seq.desc()).limit(limit)
        try:
            rows = read_transaction(self._engine, lambda session: list(session.scalars(query)))
        except SQLAlchemyError as exc:
            raise self._failed("read", exc) from exc
        return sorted((_record(row) for row in rows), key=lambda record: record.seq)

    def verify(self) -> tuple[list[ChainBreak], str]:
        """Walk the whole chain; return where it breaks (empty when intact) and the head hash."""
        breaks: list[ChainBreak] = []
        prev, expected_seq = GENESIS_HASH, 1
        for record in self.records():
            if record.seq != expected_seq:
                breaks.append(ChainBreak(record.seq, f"expected record {expected_seq}: records are missing"))
            if record.prev_hash != prev:
                breaks.append(ChainBreak(record.seq, "does not link to the record before it"))
            digest = record_hash(
                record.prev_hash,
                record.seq,
                record.at,
                record.who,
                record.what,
                record.objects,
                record.reason,
                record.outcome,
            )
            if digest != record.hash:
                breaks.append(ChainBreak(record.seq, "its content does not match its hash (altered)"))
            prev, expected_seq = record.hash, record.seq + 1
        return breaks, prev


def _record(row: _Row) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        at=row.at,
        who=row.who,
        what=row.what,
        objects=tuple(row.objects),
        reason=row.reason,
        outcome=row.outcome,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _first_line(exc: BaseException) -> str:
    # SQLAlchemy appends the statement and a help link; hide_parameters keeps values out, but one line
    # is what an operator needs.
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
