"""The general ledger: balanced batches of journal lines, as the ERP receives them.

A :class:`JournalBatch` groups :class:`canonical.models.JournalLine` s into one ERP journal of one legal
entity, for one accounting period and date. Its debits equal its credits, in one currency. None of it is
patient data: lines carry the pseudonymous encounter reference, never the encounter id.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import Field, model_validator

from canonical.models import CanonicalModel, JournalLine

_PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"


class PostingMode(StrEnum):
    """How the lines of a batch were grouped, as configured per legal entity."""

    PER_ENCOUNTER = "per_encounter"  # one batch per encounter and day: full drill-down in the ERP
    DEPARTMENTAL = "departmental"  # one batch per cost centre and day
    DAILY_SUMMARY = "daily_summary"  # one batch per legal entity and day, lines summed by account


class JournalBatch(CanonicalModel):
    """A balanced ERP journal: the unit the ERP posts atomically and acknowledges.

    Invariants: at least two lines, total debits equal total credits, one currency, unique line ids, and
    the journal date falls in the accounting period (a calendar month).
    """

    batch_id: str = Field(
        min_length=1,
        description="Deterministic id (derived from legal entity, posting mode, period and grouping key): "
        "the ERP's idempotency key for the journal header",
    )
    legal_entity: str = Field(
        min_length=1, description="LegalEntity.code: the company whose books it posts to"
    )
    posting_mode: PostingMode = Field(description="How the lines were grouped into this batch")
    accounting_period: str = Field(pattern=_PERIOD, description="ERP accounting period, YYYY-MM")
    journal_date: dt.date = Field(description="ERP journal header date; within accounting_period")
    description: str = Field("", description="Journal header text; never patient data")
    lines: tuple[JournalLine, ...] = Field(min_length=2, description="The journal lines (hcsync JournalLine)")

    @property
    def total_debit_cents(self) -> int:
        """Sum of the lines' debits."""
        return sum(line.debit_cents for line in self.lines)

    @property
    def total_credit_cents(self) -> int:
        """Sum of the lines' credits."""
        return sum(line.credit_cents for line in self.lines)

    @property
    def currency(self) -> str:
        """The batch's one currency (that of every line)."""
        return self.lines[0].currency

    @model_validator(mode="after")
    def _balanced(self) -> JournalBatch:
        currencies = sorted({line.currency for line in self.lines})
        if len(currencies) != 1:
            raise ValueError(f"journal batch {self.batch_id} mixes currencies {', '.join(currencies)}")
        if self.total_debit_cents != self.total_credit_cents:
            raise ValueError(
                f"journal batch {self.batch_id} does not balance: debits {self.total_debit_cents} cents, "
                f"credits {self.total_credit_cents} cents"
            )
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError(f"journal batch {self.batch_id} repeats a line id")
        if accounting_period(self.journal_date) != self.accounting_period:
            raise ValueError(
                f"journal batch {self.batch_id}: journal date {self.journal_date} is not in accounting "
                f"period {self.accounting_period}"
            )
        return self


def accounting_period(day: dt.date) -> str:
    """Return the accounting period (YYYY-MM) of a date."""
    return f"{day.year:04d}-{day.month:02d}"


__all__ = ["JournalBatch", "PostingMode", "accounting_period"]
