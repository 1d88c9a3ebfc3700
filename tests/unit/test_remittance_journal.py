"""Remittance journals: balanced per legal entity, cash adding up to BPR02, no encounter on any line."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from canonical.reference import PayerType
from cluster.masterdata.build_demo import build
from streams.remittance_journal import (
    CASH_ACCOUNT,
    INTEREST_ACCOUNT,
    PATIENT_RECEIVABLE_ACCOUNT,
    RECOVERY_ACCOUNT,
    Settlement,
    remittance_journals,
)

DAY = dt.date(2026, 12, 5)


def settlement(
    facility: str, entity: str, *, plb: int = 0, payer_type: PayerType = PayerType.MEDICARE
) -> Settlement:
    return Settlement(
        facility=facility,
        legal_entity=entity,
        business_unit=f"BU-{facility}",
        receivables_account="1200",
        payer_type=payer_type,
        claims=3,
        settled_cents=100_000,
        paid_cents=40_000,
        contractual_cents=45_000,
        patient_cents=10_000,
        other_cents=5_000,
        provider_adjustment_cents=plb,
    )


def _by_account(command: object) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in command.lines:  # type: ignore[attr-defined]
        totals[line.account] = totals.get(line.account, 0) + line.debit_cents - line.credit_cents
    return totals


def test_one_balanced_journal_per_legal_entity_with_cash_equal_to_bpr02() -> None:
    settlements = [
        settlement("NMH", "NMHC", plb=2_500),
        settlement("RCH", "NMHC"),
        settlement("SVH", "SVHS", plb=-700, payer_type=PayerType.COMMERCIAL),
    ]
    commands = remittance_journals(
        settlements, source_event_id="ev-835", correlation_id="corr", journal_date=DAY
    )
    assert [c.lines[0].legal_entity for c in commands] == ["NMHC", "SVHS"]
    for command in commands:
        assert sum(line.debit_cents for line in command.lines) == sum(
            line.credit_cents for line in command.lines
        )
        assert all(line.encounter_ref == "" and line.description == "" for line in command.lines)
        assert all(line.source_event_id == "ev-835" for line in command.lines)
    nmhc, svhs = (_by_account(c) for c in commands)
    patient = PATIENT_RECEIVABLE_ACCOUNT
    assert nmhc == {CASH_ACCOUNT: 77_500, "4960": 100_000, patient: 20_000, "1200": -200_000,
                    RECOVERY_ACCOUNT: 2_500}  # fmt: skip
    assert svhs == {CASH_ACCOUNT: 40_700, "4962": 50_000, patient: 10_000, "1200": -100_000,
                    INTEREST_ACCOUNT: -700}  # fmt: skip
    # Cash over all journals is what the payer sent: paid less the PLB total.
    assert nmhc[CASH_ACCOUNT] + svhs[CASH_ACCOUNT] == 3 * 40_000 - (2_500 - 700)
    again = remittance_journals(
        settlements, source_event_id="ev-835", correlation_id="corr", journal_date=DAY
    )
    assert again == commands  # deterministic ids: a replay posts nothing twice


def test_every_account_is_in_the_demo_chart_of_accounts() -> None:
    data = build()
    commands = remittance_journals(
        [settlement("NMH", "NMHC", plb=1), settlement("SVH", "SVHS", plb=-1, payer_type=PayerType.MEDICAID)],
        source_event_id="e",
        correlation_id="c",
        journal_date=DAY,
    )
    for command in commands:
        for line in command.lines:
            assert data.account(line.account) is not None, line.account


def test_a_settlement_that_does_not_add_up_is_refused() -> None:
    bad = dataclasses.replace(settlement("NMH", "NMHC"), settled_cents=99_999)
    with pytest.raises(ValueError, match="settled 99999"):
        remittance_journals([bad], source_event_id="e", correlation_id="c", journal_date=DAY)
