"""Posting rules: how one charge becomes balanced ERP journal lines, with no PHI."""

from __future__ import annotations

from dataclasses import dataclass

from canonical import ids
from canonical.models import Charge, JournalLine


@dataclass(frozen=True, slots=True)
class PostingRules:
    """Accounts and the pseudonymisation key used to turn charges into journal lines."""

    receivables_account: str
    revenue_account: str
    encounter_ref_key: bytes
    currency: str = "USD"

    def cost_centre(self, charge: Charge) -> str:
        """Return the cost centre of the performing department."""
        return self.cost_centre_of(charge.facility, charge.department)

    @staticmethod
    def cost_centre_of(facility: str, department: str) -> str:
        """Return the cost centre of a facility's department (the facility alone when none is known)."""
        return f"{facility}-{department}" if department else facility

    def journal_lines(
        self, charge: Charge, source_event_id: str, correlation_id: str
    ) -> tuple[JournalLine, ...]:
        """Return the two lines of a charge: debit receivables, credit revenue (reversed for a credit)."""
        amount = abs(charge.amount_cents)
        is_credit = charge.amount_cents < 0
        ref = ids.encounter_ref(charge.encounter_id, self.encounter_ref_key)
        text = f"{charge.charge_code} {charge.description}".strip()[:120]
        common = {
            "journal_date": charge.service_at.date(),
            "facility": charge.facility,
            "currency": charge.currency or self.currency,
            "encounter_ref": ref,
            "source_event_id": source_event_id,
            "correlation_id": correlation_id,
            "description": text,
        }
        receivable = JournalLine(
            line_id=ids.derived_id(source_event_id, "erp.line.receivable"),
            account=self.receivables_account,
            cost_centre="",
            debit_cents=0 if is_credit else amount,
            credit_cents=amount if is_credit else 0,
            **common,
        )
        revenue = JournalLine(
            line_id=ids.derived_id(source_event_id, "erp.line.revenue"),
            account=self.revenue_account,
            cost_centre=self.cost_centre(charge),
            debit_cents=amount if is_credit else 0,
            credit_cents=0 if is_credit else amount,
            **common,
        )
        return (receivable, revenue)
