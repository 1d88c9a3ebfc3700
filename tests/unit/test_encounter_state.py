"""The encounter state machine: duplicates, late admissions, order-independent status, balanced postings."""

from __future__ import annotations

import itertools

import pytest

from canonical.envelope import EventEnvelope
from canonical.models import EncounterStatus, MovementType
from streams.commands import (
    InventoryCommand,
    JournalCommand,
    PostChargeCommand,
    UpdateCodingCommand,
    UpsertAccountCommand,
)
from streams.encounter_state import EncounterState, apply_event, merge_command
from streams.posting import PostingRules
from tests.hl7_samples import a40, adt, bar, dft, ras, rde
from tests.masterdata import cost_centre, demo_set, enriched

RULES = PostingRules(encounter_ref_key=b"k")
LINES = [("CG", "99283", "ED visit", 1, "450.00")]


def _run(state: EncounterState, raw: bytes) -> tuple[EncounterState, list[object], list[JournalCommand]]:
    billing: list[object] = []
    erp: list[JournalCommand] = []
    for event in enriched(raw):
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
        state,
        dft("D1", "V1", [("CG", "99283", "ED", 1, "10.00"), ("CG", "36415", "Venipuncture", 2, "5.00")]),
    )
    assert [type(c) for c in billing] == [PostChargeCommand, PostChargeCommand]
    assert len(erp) == 2
    assert state.charges_posted == 2 and state.net_charge_cents == 1500


def test_duplicate_event_has_no_effect() -> None:
    state, _, _ = _run(EncounterState(encounter_id="NMH:V1"), adt("A04", "A1", "V1"))
    message = dft("D1", "V1", [("CG", "99283", "ED", 1, "10.00")])
    state, billing, _ = _run(state, message)
    assert len(billing) == 1
    [event] = enriched(message)
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
    code = demo_set().charge_code("99283")
    assert code is not None
    revenue = next(line for line in credit.lines if line.account == code.revenue_account)
    assert revenue.debit_cents == 400 and revenue.cost_centre == cost_centre("NMH", "MEDSURG")
    assert revenue.legal_entity and revenue.business_unit


# --- order independence, cancels, coding, doses, supplies, merges --------------------------------------


def _events(*messages: bytes) -> list[EventEnvelope]:
    return [event for raw in messages for event in enriched(raw)]


def _final(events: list[EventEnvelope]) -> tuple[EncounterState, list[object], list[object]]:
    state = EncounterState(encounter_id=events[0].encounter_id)
    billing: list[object] = []
    erp: list[object] = []
    for event in events:
        t = apply_event(state, event, RULES)
        state = t.state
        billing.extend(t.billing)
        erp.extend(t.erp)
    return state, billing, erp


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ((("A01", "1000"), ("A03", "1100"), ("A13", "1200")), EncounterStatus.ADMITTED),
        ((("A01", "1000"), ("A03", "1100")), EncounterStatus.DISCHARGED),
        ((("A01", "1000"), ("A03", "1200"), ("A13", "1100")), EncounterStatus.DISCHARGED),
        ((("A01", "1000"), ("A11", "1100")), EncounterStatus.CANCELLED),
        ((("A11", "1000"), ("A01", "1100")), EncounterStatus.ADMITTED),
        ((("A04", "1000"), ("A06", "1100")), EncounterStatus.ADMITTED),
        ((("A01", "1000"), ("A07", "1100")), EncounterStatus.REGISTERED),
        ((("A05", "1000"), ("A08", "1100")), EncounterStatus.PREADMITTED),
        ((("A05", "1000"), ("A04", "1100"), ("A02", "1200")), EncounterStatus.REGISTERED),
        ((("A04", "1000"), ("A03", "1100"), ("A13", "1200")), EncounterStatus.REGISTERED),
    ],
)
def test_status_is_the_same_in_every_processing_order(
    messages: tuple[tuple[str, str], ...], expected: EncounterStatus
) -> None:
    events = _events(
        *(adt(trigger, f"C{trigger}", "V1", at=f"20261121{hhmm}00") for trigger, hhmm in messages)
    )
    finals = set()
    for order in itertools.permutations(events):
        state, billing, _ = _final(list(order))
        finals.add((state.status, state.encounter))
        last = [c for c in billing if isinstance(c, UpsertAccountCommand)][-1]
        assert last.status is state.status and last.state_version == len(events)
    assert {status for status, _ in finals} == {expected}
    assert len(finals) == 1, "the encounter snapshot must not depend on processing order"


def test_the_state_of_more_account_events_carries_a_higher_version_whatever_comes_between() -> None:
    """Billing keeps the account state with the highest state_version. A table rebuilt from the message
    store may take the events in another order, so the version must grow with the account events only:
    charges (held or posted) and other events in between must not make a partial state outrank a fuller
    one (with a count of every event, A04 + charge + A08 outranked A04 + A08 + A03)."""
    events = _events(
        adt("A04", "C1", "V1", at="20261121100000"),
        dft("C2", "V1", [("CG", "99283", "ED visit", 1, "120.00")]),
        adt("A08", "C3", "V1", at="20261121110000"),
        adt("A03", "C4", "V1", at="20261121120000"),
    )
    for order in itertools.permutations(events):
        _, billing, _ = _final(list(order))
        versions = [c.state_version for c in billing if isinstance(c, UpsertAccountCommand)]
        assert versions == [1, 2, 3], (order, versions)


def test_closed_account_and_status_round_trip_through_the_table_encoding() -> None:
    state, _, _ = _final(
        _events(adt("A01", "A1", "V1"), bar("P06", "B1", "V1", diagnoses=(), procedures=(), drg=""))
    )
    assert state.status is EncounterStatus.CLOSED
    again = EncounterState.model_validate(state.model_dump(mode="json"))
    assert again == state


def test_older_coding_arriving_late_is_not_sent() -> None:
    new = bar("P05", "B2", "V1", diagnoses=("E11.9",), at="20261122100000")
    old = bar("P05", "B1", "V1", diagnoses=("I10",), at="20261121100000")
    state, billing, _ = _final(_events(adt("A01", "A1", "V1"), new, old))
    codings = [c for c in billing if isinstance(c, UpdateCodingCommand)]
    assert [c.coding.diagnoses[0].code for c in codings] == ["E11.9"]
    assert state.coded_at is not None and state.coded_at.day == 22


def test_doses_move_stock_by_the_difference_in_any_order() -> None:
    given = ras("S1", "V1", [("1", "2", "CP")], at="20261120110000")
    corrected = ras("S2", "V1", [("1", "3", "CP^U")], at="20261120120000")
    deleted = ras("S3", "V1", [("1", "3", "CP^D")], at="20261120130000")
    refused = ras("S4", "V1", [("2", "5", "RE")], at="20261120110000")
    for messages, expected_milli in (
        ((given, corrected), 3000),
        ((corrected, given), 3000),
        ((given, corrected, deleted), 0),
        ((deleted, given), 0),
        ((given, refused), 2000),
    ):
        _, billing, erp = _final(_events(*messages))
        assert not billing
        movements = [m for c in erp if isinstance(c, InventoryCommand) for m in c.movements]
        net = sum(m.quantity_milli * (1 if m.movement_type is MovementType.ISSUE else -1) for m in movements)
        assert net == expected_milli
        assert all(
            m.item_code == "00409-4888-01" and m.cost_centre == cost_centre("NMH", "MEDSURG")
            for m in movements
        )
        assert all(m.encounter_ref and "V1" not in m.encounter_ref for m in movements)


def test_supply_charge_issues_stock_and_its_reversal_returns_it() -> None:
    lines = [("CG", "SUP1001", "IV start kit", 2, "8.00"), ("CG", "SUP1001", "IV start kit", -2, "8.00")]
    _, billing, erp = _final(_events(adt("A01", "A1", "V1"), dft("D1", "V1", lines, code_system="SUPPLY")))
    assert [type(c) for c in billing] == [UpsertAccountCommand, PostChargeCommand, PostChargeCommand]
    stock = [m for c in erp if isinstance(c, InventoryCommand) for m in c.movements]
    assert [(m.movement_type, m.quantity_milli) for m in stock] == [
        (MovementType.ISSUE, 2000),
        (MovementType.RETURN, 2000),
    ]
    journals = [c for c in erp if isinstance(c, JournalCommand)]
    assert len(journals) == 2 and sum(j.lines[1].credit_cents - j.lines[1].debit_cents for j in journals) == 0


def test_medication_order_is_recorded_without_commands() -> None:
    state, billing, erp = _final(_events(rde("R1", "V1")))
    assert state.orders == {"ORD1": "NW"} and not billing and not erp


def test_merge_becomes_a_billing_command_not_encounter_state() -> None:
    [event] = enriched(a40("M1", "MRN002", "MRN001"))
    command = merge_command(event)
    assert command.merge.prior_mrn == "MRN001" and command.command_id == merge_command(event).command_id
    with pytest.raises(ValueError, match="merge"):
        apply_event(EncounterState(encounter_id=event.encounter_id), event, RULES)


def test_a_cancelled_discharge_clears_the_discharge_time() -> None:
    discharged = adt("A03", "X1", "V1", at="20261121100000", discharge="20261121100000")
    state, billing, _ = _final(_events(adt("A01", "A1", "V1", at="20261121080000"), discharged))
    assert state.encounter is not None and state.encounter.discharged_at is not None
    state, billing, _ = _final(
        _events(
            adt("A01", "A1", "V1", at="20261121080000"),
            discharged,
            adt("A13", "C1", "V1", at="20261121120000"),
        )
    )
    assert state.status is EncounterStatus.ADMITTED
    assert state.encounter is not None and state.encounter.discharged_at is None
    last = [c for c in billing if isinstance(c, UpsertAccountCommand)][-1]
    assert last.encounter.discharged_at is None


def test_a_zero_amount_credit_is_a_credit_event() -> None:
    [event] = enriched(dft("D0", "V1", [("CD", "99211", "Waived", 1, "0.00")]))
    assert event.event_type.value == "charge.credited"


def test_a_posting_without_dimensions_is_refused_and_not_marked_processed() -> None:
    """An event mapped before enrichment existed cannot post; a re-sent, enriched copy still can."""
    state, _, _ = _run(EncounterState(encounter_id="NMH:V1"), adt("A01", "A1", "V1"))
    [bare] = [e.model_copy(update={"dimensions": None}) for e in enriched(dft("D1", "V1", LINES))]
    refused = apply_event(state, bare, RULES)
    assert refused.unenriched == [bare] and refused.state == state and not refused.billing and not refused.erp
    [rich] = enriched(dft("D1", "V1", LINES))
    posted = apply_event(state, rich, RULES)
    assert [type(c) for c in posted.billing] == [PostChargeCommand] and len(posted.erp) == 1


def test_a_held_charge_without_dimensions_does_not_block_the_registration() -> None:
    # A table row written before the upgrade: its held charge has no dimensions.
    [bare] = [e.model_copy(update={"dimensions": None}) for e in enriched(dft("D1", "V1", LINES))]
    state = EncounterState(encounter_id="NMH:V1", processed_event_ids=(bare.event_id,), held_charges=(bare,))
    [rich] = enriched(dft("D2", "V1", LINES))
    state = apply_event(state, rich, RULES).state
    assert len(state.held_charges) == 2
    [admit] = enriched(adt("A01", "A1", "V1"))
    t = apply_event(state, admit, RULES)
    assert t.unenriched == [bare] and t.released == 1 and t.state.status is EncounterStatus.ADMITTED
    assert [type(c) for c in t.billing] == [UpsertAccountCommand, PostChargeCommand]
    assert bare.event_id not in t.state.processed_event_ids and rich.event_id in t.state.processed_event_ids
