"""Posting rules: how one charge becomes balanced ERP journal lines, with no PHI.

The accounts and dimensions come from the event's ERP dimensions, which the transform actors resolved
from master data (actors.enrich): the legal entity's receivables account is debited and the charge
code's revenue account credited in the performing department's cost centre (reversed for a credit).
"""

from __future__ import annotations

from dataclasses import dataclass

from canonical import ids
from canonical.envelope import ErpDimensions, EventEnvelope
from canonical.errors import NotRetryableError
from canonical.models import Charge, JournalLine


class MissingDimensionsError(NotRetryableError):
    """An event that posts to the ERP reached the encounter agent without its master-data dimensions."""


@dataclass(frozen=True, slots=True)
class PostingRules:
    """The pseudonymisation key (and its id) and default currency used to turn charges into journal lines."""

    encounter_ref_key: bytes
    currency: str = "USD"
    encounter_ref_key_id: str = ids.DEFAULT_KEY_ID

    @staticmethod
    def dimensions(env: EventEnvelope) -> ErpDimensions:
        """Return the event's ERP dimensions; an event without them must not post."""
        if env.dimensions is None:
            raise MissingDimensionsError(
                f"event {env.event_id} ({env.event_type.value}) has no ERP dimensions: it was not enriched "
                "with master data, so it cannot post"
            )
        return env.dimensions

    def encounter_ref(self, encounter_id: str) -> str:
        return ids.encounter_ref(encounter_id, self.encounter_ref_key, self.encounter_ref_key_id)

    def journal_lines(
        self, charge: Charge, dims: ErpDimensions, source_event_id: str, correlation_id: str
    ) -> tuple[JournalLine, ...]:
        """Return the two lines of a charge: debit receivables, credit revenue (reversed for a credit)."""
        amount = abs(charge.amount_cents)
        is_credit = charge.amount_cents < 0
        # The charge code only, never the message's free text (FT1-7.2 or FT1-8 may carry anything, patient
        # data included): the ERP refuses free text and writes the code's master-data description itself.
        text = charge.charge_code
        common = {
            "journal_date": charge.service_at.date(),
            "facility": charge.facility,
            "legal_entity": dims.legal_entity,
            "business_unit": dims.business_unit,
            "currency": charge.currency or self.currency,
            "encounter_ref": self.encounter_ref(charge.encounter_id),
            "source_event_id": source_event_id,
            "correlation_id": correlation_id,
            "description": text,
        }
        receivable = JournalLine(
            line_id=ids.derived_id(source_event_id, "erp.line.receivable"),
            account=dims.receivables_account,
            cost_centre="",
            debit_cents=0 if is_credit else amount,
            credit_cents=amount if is_credit else 0,
            **common,
        )
        revenue = JournalLine(
            line_id=ids.derived_id(source_event_id, "erp.line.revenue"),
            account=dims.revenue_account,
            cost_centre=dims.cost_centre,
            debit_cents=amount if is_credit else 0,
            credit_cents=0 if is_credit else amount,
            **common,
        )
        return (receivable, revenue)
