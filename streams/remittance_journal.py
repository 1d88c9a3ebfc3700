"""Remittance journals: what one posted 835 does to the general ledger, summarized and without PHI.

Billing posts an 835 claim by claim; the ledger gets one balanced journal per legal entity of the claims it
settles, with one line per account and facility, because finance reconciles cash and receivables in
total, and claim-level detail stays in billing (where `hcsync claims show` finds it). A line carries the
835's event id and correlation id, so a journal line drills down to the 835 it came from; it carries no
encounter reference, since it sums many encounters.

Per facility, for the part of billed charges the 835 settles:

* debit cash (``1010``) with what the payer paid;
* debit the contractual allowance of the payer's kind (``4960`` Medicare, ``4961`` Medicaid, ``4962``
  commercial and managed care, and other kinds) with the CO adjustments, and with the payer's other
  write-offs (OA, PI, CR: nobody else bears them either);
* debit patient responsibility receivable (``1300``) with the PR adjustments: the patient owes them now;
* credit the legal entity's receivables account (where the charges were debited) with the whole
  settled amount.

The provider-level adjustments (PLB) of the 835 belong to the payee: a recovery withheld from this payment
(positive, e.g. WO) is debited to estimated third-party payer settlements (``2200``); interest the payer
added (negative, e.g. L6) is credited to other operating revenue (``4990``); cash moves by the difference,
so the cash lines of the journals add up to BPR02.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from canonical import ids
from canonical.models import JournalLine
from canonical.reference import PayerType
from streams.commands import JournalCommand

__all__ = [
    "CASH_ACCOUNT",
    "CONTRACTUAL_ACCOUNTS",
    "CONTRACTUAL_ALL",
    "INTEREST_ACCOUNT",
    "PATIENT_RECEIVABLE_ACCOUNT",
    "RECOVERY_ACCOUNT",
    "REMITTANCE_REVENUE",
    "Settlement",
    "remittance_journals",
]

CASH_ACCOUNT = "1010"
PATIENT_RECEIVABLE_ACCOUNT = "1300"
RECOVERY_ACCOUNT = "2200"
INTEREST_ACCOUNT = "4990"
CONTRACTUAL_ACCOUNTS: dict[PayerType, str] = {
    PayerType.MEDICARE: "4960",
    PayerType.MEDICAID: "4961",
}
_OTHER_CONTRACTUAL = "4962"
# The revenue-type accounts remittances post to (contra-revenue and interest), apart from charge revenue.
CONTRACTUAL_ALL = (*CONTRACTUAL_ACCOUNTS.values(), _OTHER_CONTRACTUAL)
REMITTANCE_REVENUE = frozenset({*CONTRACTUAL_ALL, INTEREST_ACCOUNT})


@dataclass(frozen=True, slots=True)
class Settlement:
    """What an 835 settles at one facility (billing's answer to PostRemittance), in cents. No PHI."""

    facility: str
    legal_entity: str
    business_unit: str
    receivables_account: str
    payer_type: PayerType
    claims: int
    settled_cents: int  # billed charges relieved: paid + every adjustment
    paid_cents: int
    contractual_cents: int  # CO
    patient_cents: int  # PR
    other_cents: int  # OA, PI, CR
    provider_adjustment_cents: int = 0  # the 835's PLB total, on the payee's facility only

    def check(self) -> None:
        """Refuse a settlement that does not add up: the journal would not balance."""
        parts = self.paid_cents + self.contractual_cents + self.patient_cents + self.other_cents
        if parts != self.settled_cents:
            raise ValueError(
                f"settlement at {self.facility}: paid + adjustments {parts} != settled "
                f"{self.settled_cents} cents"
            )


def _line(
    source_event_id: str,
    purpose: str,
    account: str,
    amount_cents: int,
    settlement: Settlement,
    correlation_id: str,
    journal_date: dt.date,
    currency: str,
) -> JournalLine | None:
    """One line, debit when ``amount_cents`` is positive and credit when negative; none for zero."""
    if amount_cents == 0:
        return None
    return JournalLine(
        line_id=ids.derived_id(source_event_id, f"erp.remit.{settlement.facility}.{purpose}"),
        journal_date=journal_date,
        account=account,
        facility=settlement.facility,
        legal_entity=settlement.legal_entity,
        business_unit=settlement.business_unit,
        debit_cents=max(amount_cents, 0),
        credit_cents=max(-amount_cents, 0),
        currency=currency,
        encounter_ref="",
        source_event_id=source_event_id,
        correlation_id=correlation_id,
        description="",
    )


def remittance_journals(
    settlements: Sequence[Settlement],
    *,
    source_event_id: str,
    correlation_id: str,
    journal_date: dt.date,
    currency: str = "USD",
) -> list[JournalCommand]:
    """Return one balanced journal command per legal entity for the settlements of one 835."""
    by_entity: dict[str, list[JournalLine]] = {}
    for settlement in settlements:
        settlement.check()
        contractual = CONTRACTUAL_ACCOUNTS.get(settlement.payer_type, _OTHER_CONTRACTUAL)
        plb = settlement.provider_adjustment_cents
        amounts = (
            ("cash", CASH_ACCOUNT, settlement.paid_cents - plb),
            ("contractual", contractual, settlement.contractual_cents + settlement.other_cents),
            ("patient", PATIENT_RECEIVABLE_ACCOUNT, settlement.patient_cents),
            ("receivable", settlement.receivables_account, -settlement.settled_cents),
            # A withheld recovery (positive PLB) reduces what the hospital owes the payer; interest the
            # payer added (negative PLB) is income.
            ("recovery", RECOVERY_ACCOUNT, max(plb, 0)),
            ("interest", INTEREST_ACCOUNT, min(plb, 0)),
        )
        for purpose, account, amount in amounts:
            line = _line(
                source_event_id,
                purpose,
                account,
                amount,
                settlement,
                correlation_id,
                journal_date,
                currency,
            )
            if line is not None:
                by_entity.setdefault(settlement.legal_entity, []).append(line)
    commands: list[JournalCommand] = []
    for entity, lines in sorted(by_entity.items()):
        debits = sum(line.debit_cents for line in lines)
        credits = sum(line.credit_cents for line in lines)
        if debits != credits:  # cannot happen for checked settlements; never post half a journal
            raise ValueError(f"remittance journal of {entity} does not balance: {debits} != {credits} cents")
        if len(lines) >= 2:
            commands.append(
                JournalCommand(
                    command_id=ids.derived_id(source_event_id, f"erp.remit.{entity}"),
                    lines=tuple(lines),
                    source_event_id=source_event_id,
                    correlation_id=correlation_id,
                )
            )
    return commands
