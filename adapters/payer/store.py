"""The reference payer's books: interchanges it answered, claims it holds, remittances it issued.

A submitter that resends an interchange (same sender and ISA13) gets the answer it got the first time, so
a client that retries after losing an answer never has its claims adjudicated twice. Claims wait here
until the remittance schedule pays them; a claim is remitted once, in one 835, and the 835's bytes are
kept, so a delivery that failed half way is written again with the same content.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, DateTime, Index, LargeBinary, String, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from foundation.sql import create_schema, open_engine, read_transaction, write_transaction

__all__ = [
    "AnswerRow",
    "ClaimRow",
    "PayerStore",
    "PendingClaim",
    "RemittanceRow",
    "pack_answer",
    "unpack_answer",
]

_MAX_CONTROL = 999_999_999  # ISA13 is nine digits


class Base(DeclarativeBase):
    """Declarative base of the payer's tables."""

    type_annotation_map = {
        int: BigInteger,
        dt.datetime: DateTime(timezone=True),
        str: String(),
        bytes: LargeBinary,
    }


class AnswerRow(Base):
    """An interchange the payer answered (270 or 837), and its answer, for resends."""

    __tablename__ = "payer_answers"

    sender: Mapped[str] = mapped_column(primary_key=True)  # ISA05:ISA06 of the submitter
    control: Mapped[str] = mapped_column(primary_key=True)  # ISA13
    kind: Mapped[str]  # 270 or 837
    digest: Mapped[str]  # of the interchange as received: other content under the same ISA13 is refused
    answer: Mapped[bytes]  # the 271, or the TA1 and 999, as sent back (pack_answer)
    received_at: Mapped[dt.datetime]


class ClaimRow(Base):
    """A claim accepted from an 837, waiting for (or paid by) a remittance."""

    __tablename__ = "payer_claims"

    payer_id: Mapped[str] = mapped_column(primary_key=True)
    claim_id: Mapped[str] = mapped_column(primary_key=True)  # CLM01
    frequency: Mapped[str] = mapped_column(primary_key=True)  # CLM05-3: a replacement is another claim
    payee_npi: Mapped[str]
    submission: Mapped[bytes]  # the ClaimSubmission JSON as read from the 837
    sender: Mapped[str]
    control: Mapped[str]  # ISA13 of the 837 it came in
    received_at: Mapped[dt.datetime]
    trace_number: Mapped[str] = mapped_column(default="", server_default="")  # TRN02 of its 835, once paid

    __table_args__ = (Index("ix_payer_claims_pending", "trace_number", "received_at"),)


class CounterRow(Base):
    """The payer's control-number counter: ISA13 and GS06 of what it sends never repeat."""

    __tablename__ = "payer_counters"

    name: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[int]


def pack_answer(parts: Sequence[bytes]) -> bytes:
    """Keep several interchanges in one column: each length-prefixed (X12 delimiters may be any byte)."""
    return b"".join(len(part).to_bytes(8, "big") + part for part in parts)


def unpack_answer(data: bytes) -> list[bytes]:
    """The interchanges :func:`pack_answer` kept."""
    parts, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 8], "big")
        parts.append(data[at + 8 : at + 8 + size])
        at += 8 + size
    return parts


class RemittanceRow(Base):
    """An 835 the payer issued."""

    __tablename__ = "payer_remittances"

    trace_number: Mapped[str] = mapped_column(primary_key=True)
    payer_id: Mapped[str]
    payee_npi: Mapped[str]
    claims: Mapped[int]
    total_paid_cents: Mapped[int]
    content: Mapped[bytes]
    file_name: Mapped[str]
    issued_at: Mapped[dt.datetime]
    delivered_at: Mapped[dt.datetime | None]


@dataclass(frozen=True, slots=True)
class PendingClaim:
    """A claim the schedule may pay: its keys and the submission as read."""

    payer_id: str
    claim_id: str
    frequency: str
    payee_npi: str
    submission: bytes


class PayerStore:
    """The payer's tables in SQLite (or any SQLAlchemy database)."""

    def __init__(self, database_url: str) -> None:
        self._engine = open_engine(database_url)
        create_schema(self._engine, Base.metadata)

    def close(self) -> None:
        self._engine.dispose()

    def next_control(self, count: int = 1) -> int:
        """Reserve ``count`` control numbers and return the first (1..999999999, then round again)."""

        def work(session: Session) -> int:
            row = session.get(CounterRow, "control", with_for_update=True)
            if row is None:
                row = CounterRow(name="control", value=0)
                session.add(row)
            first = row.value % _MAX_CONTROL + 1
            row.value = (row.value + count) % _MAX_CONTROL
            return first

        return write_transaction(self._engine, work)

    def answer_for(self, sender: str, control: str) -> AnswerRow | None:
        """The answer already given to this interchange, if any."""

        def work(session: Session) -> AnswerRow | None:
            row = session.get(AnswerRow, (sender, control))
            if row is not None:
                session.expunge(row)
            return row

        return read_transaction(self._engine, work)

    def record(self, answer: AnswerRow, claims: Sequence[ClaimRow] = ()) -> AnswerRow:
        """Keep an answer and the claims it accepted in one transaction; a concurrent twin keeps the first."""

        def work(session: Session) -> AnswerRow:
            known = session.get(AnswerRow, (answer.sender, answer.control))
            if known is not None:
                session.expunge(known)
                return known
            session.add(answer)
            for claim in claims:
                if session.get(ClaimRow, (claim.payer_id, claim.claim_id, claim.frequency)) is None:
                    session.add(claim)
            session.flush()
            session.expunge(answer)
            return answer

        return write_transaction(self._engine, work)

    def pending(self, received_before: dt.datetime, limit: int) -> list[PendingClaim]:
        """Claims not yet remitted that arrived before ``received_before``, oldest first."""

        def work(session: Session) -> list[PendingClaim]:
            rows = session.scalars(
                select(ClaimRow)
                .where(ClaimRow.trace_number == "", ClaimRow.received_at < received_before)
                .order_by(ClaimRow.received_at, ClaimRow.payer_id, ClaimRow.claim_id)
                .limit(limit)
            )
            return [
                PendingClaim(row.payer_id, row.claim_id, row.frequency, row.payee_npi, row.submission)
                for row in rows
            ]

        return read_transaction(self._engine, work)

    def issue(self, remittance: RemittanceRow, claims: Sequence[PendingClaim]) -> None:
        """Record an 835 and mark its claims paid by it, in one transaction."""

        def work(session: Session) -> None:
            if session.get(RemittanceRow, remittance.trace_number) is None:
                session.add(remittance)
            for claim in claims:
                session.execute(
                    update(ClaimRow)
                    .where(
                        ClaimRow.payer_id == claim.payer_id,
                        ClaimRow.claim_id == claim.claim_id,
                        ClaimRow.frequency == claim.frequency,
                    )
                    .values(trace_number=remittance.trace_number)
                )

        write_transaction(self._engine, work)

    def undelivered(self) -> list[RemittanceRow]:
        """835s issued and not yet delivered (written to the delivery directory)."""

        def work(session: Session) -> list[RemittanceRow]:
            rows = list(
                session.scalars(
                    select(RemittanceRow)
                    .where(RemittanceRow.delivered_at.is_(None))
                    .order_by(RemittanceRow.issued_at)
                )
            )
            for row in rows:
                session.expunge(row)
            return rows

        return read_transaction(self._engine, work)

    def delivered(self, trace_number: str, at: dt.datetime) -> None:
        """Mark an 835 delivered."""

        def work(session: Session) -> None:
            session.execute(
                update(RemittanceRow)
                .where(RemittanceRow.trace_number == trace_number)
                .values(delivered_at=at)
            )

        write_transaction(self._engine, work)

    def counts(self) -> dict[str, int]:
        """Claims held, claims remitted, 835s issued and delivered: what the payer's status shows."""

        def work(session: Session) -> dict[str, int]:
            def number(statement: object) -> int:
                return int(session.scalar(statement) or 0)  # type: ignore[call-overload]

            claims = select(func.count()).select_from(ClaimRow)
            remittances = select(func.count()).select_from(RemittanceRow)
            answers = select(func.count()).select_from(AnswerRow)
            return {
                "claims_held": number(claims.where(ClaimRow.trace_number == "")),
                "claims_remitted": number(claims.where(ClaimRow.trace_number != "")),
                "remittances_issued": number(remittances),
                "remittances_delivered": number(remittances.where(RemittanceRow.delivered_at.is_not(None))),
                "eligibility_answered": number(answers.where(AnswerRow.kind == "270")),
                "claim_files_answered": number(answers.where(AnswerRow.kind == "837")),
                "remitted_cents": number(select(func.coalesce(func.sum(RemittanceRow.total_paid_cents), 0))),
            }

        return read_transaction(self._engine, work)
