"""The encounter state machine: duplicates, late admissions, forward-only status, balanced postings."""

from __future__ import annotations

from canonical.hl7v2.mapping import canonicalize
from canonical.models import EncounterStatus
from streams.commands import JournalCommand, PostChargeCommand, UpsertAccountCommand
from streams.encounter_state import EncounterState, apply_event
from streams.posting import PostingRules
from tests.hl7_samples import adt, dft

RULES = PostingRules(receivables_account="1200", revenue_account="4000", encounter_ref_key=b"k")


def _run(state: EncounterState, raw: bytes) -> tuple[EncounterState, list[object], list[JournalCommand]]:
    billing: list[object] = []
    erp: list[JournalCommand] = []
    for event in canonicalize(raw):
        t = apply_event(state, event, RULES)
        state = t.state
        billing.extend(t.billing)
        erp.extend(t.erp)
    return state, billing, erp


def test_admit_then_charges() -> None:
    state = EncounterState(encounter_id="NMH:V1")
    state, billing, erp = _run(state, adt("A01", "A1", "V1"))
    assert state.status is EncounterStatus.ADMITTED
    assert [type(c) for c in billing] == [UpsertAccountCommand]
    state, billing, erp = _run(
        state, dft("D1", "V1", [("CG", "99283", "ED", 1, "10.00"), ("CG", "1", "X", 2, "5.00")])
    )
    assert [type(c) for c in billing] == [PostChargeCommand, PostChargeCommand]
    assert len(erp) == 2
    assert state.charges_posted == 2 and state.net_charge_cents == 1500


def test_duplicate_event_has_no_effect() -> None:
    state, _, _ = _run(EncounterState(encounter_id="NMH:V1"), adt("A04", "A1", "V1"))
    message = dft("D1", "V1", [("CG", "99283", "ED", 1, "10.00")])
    state, billing, _ = _run(state, message)
    assert len(billing) == 1
    [event] = canonicalize(message)
    again = apply_event(state, event, RULES)
    assert again.duplicate and not again.billing and not again.erp and again.state == state


def test_charge_before_admission_is_held_then_released() -> None:
    state = EncounterState(encounter_id="NMH:V1")
    state, billing, erp = _run(state, dft("D1", "V1", [("CG", "99283", "ED", 1, "10.00")]))
    assert state.status is None and not billing and not erp and len(state.held_charges) == 1
    state, billing, erp = _run(state, adt("A01", "A1", "V1"))
    assert [type(c) for c in billing] == [UpsertAccountCommand, PostChargeCommand]
    assert len(erp) == 1 and state.held_charges == () and state.charges_posted == 1


def test_zero_amount_charge_goes_to_billing_without_a_journal() -> None:
    state = EncounterState(encounter_id="NMH:V1")
    state, _, _ = _run(state, dft("D0", "V1", [("CG", "99211", "No-charge visit", 1, "0.00")]))
    state, billing, erp = _run(state, adt("A01", "A1", "V1"))
    assert [type(c) for c in billing] == [UpsertAccountCommand, PostChargeCommand]
    assert erp == [] and state.charges_posted == 1 and state.net_charge_cents == 0


def test_status_only_moves_forward() -> None:
    state = EncounterState(encounter_id="NMH:V1")
    state, _, _ = _run(state, adt("A03", "A3", "V1", discharge="20261121100000"))
    state, billing, _ = _run(state, adt("A01", "A1", "V1"))
    assert state.status is EncounterStatus.DISCHARGED
    assert isinstance(billing[0], UpsertAccountCommand) and billing[0].status is EncounterStatus.DISCHARGED
    assert state.encounter is not None and state.encounter.discharged_at is not None


def test_journal_lines_balance_and_carry_no_phi() -> None:
    state, _, _ = _run(EncounterState(encounter_id="NMH:V1"), adt("A01", "A1", "V1"))
    _, _, erp = _run(
        state, dft("D1", "V1", [("CG", "99283", "ED", 1, "10.00"), ("CD", "99283", "ED", 1, "4.00")])
    )
    for command in erp:
        assert sum(line.debit_cents for line in command.lines) == sum(
            line.credit_cents for line in command.lines
        )
        text = command.model_dump_json()
        for phi in ("Doe", "Jane", "MRN001", "1980", "Springfield", "NMH:V1"):
            assert phi not in text
    credit = erp[1]
    revenue = next(line for line in credit.lines if line.account == "4000")
    assert revenue.debit_cents == 400 and revenue.cost_centre == "NMH-MEDSURG"
