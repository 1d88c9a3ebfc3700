"""The encounter state's revenue cycle: coverage recorded and checked, claims due once discharged, coded
and insured, in whatever order the encounter's events arrive."""

from __future__ import annotations

import itertools

import pytest

from canonical.envelope import EventEnvelope
from streams.commands import ClaimsDueCommand, CoverageCommand
from streams.encounter_state import EncounterState, apply_event
from streams.posting import PostingRules
from tests.hl7_samples import adt, bar, dft, in1, with_segments
from tests.masterdata import enriched

RULES = PostingRules(encounter_ref_key=b"k")
IN1 = in1(f1="1", f2="PPO", f3="BCBS-MN", f8="G1", f17="SEL", f36="XY1")


def _messages(*, insured: bool = True) -> list[bytes]:
    admit = adt("A01", "A1", "V1")
    return [
        with_segments(admit, IN1) if insured else admit,
        dft("C1", "V1", [("CG", "93000", "ECG", 1, "95.00")]),
        adt("A03", "D1", "V1", discharge="20261121090000", at="20261121090000"),
        bar("P05", "B1", "V1"),
    ]


def _stay(*, insured: bool = True) -> list[EventEnvelope]:
    return [event for raw in _messages(insured=insured) for event in enriched(raw)]


def _apply(events: list[EventEnvelope]) -> tuple[EncounterState, list[object], list[object]]:
    state = EncounterState(encounter_id="NMH:V1")
    billing: list[object] = []
    revenue: list[object] = []
    for event in events:
        transition = apply_event(state, event, RULES)
        state = transition.state
        billing.extend(transition.billing)
        revenue.extend(transition.revenue)
    return state, billing, revenue


def test_an_admission_with_insurance_records_it_and_asks_the_payer() -> None:
    state, billing, revenue = _apply(_stay())
    [recorded] = [c for c in billing if isinstance(c, CoverageCommand)]
    [checked] = revenue
    assert (
        isinstance(checked, CoverageCommand) and checked.check_eligibility and not recorded.check_eligibility
    )
    assert recorded.record_key == checked.record_key and recorded.command_id != checked.command_id
    assert (recorded.coverage.payer_id, recorded.coverage.member_id, recorded.facility) == (
        "BCBS-MN",
        "XY1",
        "NMH",
    )
    assert state.coverages == (recorded.coverage,)
    claims = [c for c in billing if isinstance(c, ClaimsDueCommand)]
    assert [c.encounter_id for c in claims] == ["NMH:V1"]  # due once: the coding after the discharge


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_claims_are_due_and_the_coverage_recorded_in_any_order(order: tuple[int, ...]) -> None:
    messages = _messages()
    state, billing, _ = _apply([event for i in order for event in enriched(messages[i])])
    assert len([c for c in billing if isinstance(c, CoverageCommand)]) == 1
    assert any(isinstance(c, ClaimsDueCommand) for c in billing), order
    assert state.coverages and state.coverages[0].payer_id == "BCBS-MN"


def test_a_self_pay_stay_gets_no_claim_and_an_update_without_in1_keeps_the_coverage() -> None:
    _, billing, revenue = _apply(_stay(insured=False))
    assert not any(isinstance(c, ClaimsDueCommand | CoverageCommand) for c in billing) and revenue == []
    state, _, _ = _apply(_stay())
    later = adt("A08", "U1", "V1", at="20261121120000")
    transition = apply_event(state, enriched(later)[0], RULES)
    assert transition.state.coverages == state.coverages and transition.revenue == []
